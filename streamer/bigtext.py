"""Big text for the terminal: a 3x5 pixel font drawn with half blocks, 3 rows high.

    big_text_lines("Bark")   # 3 strings of "▀▄█ " cells, 4 columns per character
    big_text_width("Bark")   # 15
"""

from __future__ import annotations

FONT = {  # 5 rows of 3 pixels each, top to bottom
    "A": ".#. #.# ### #.# #.#", "B": "##. #.# ##. #.# ##.", "C": ".## #.. #.. #.. .##",
    "D": "##. #.# #.# #.# ##.", "E": "### #.. ##. #.. ###", "F": "### #.. ##. #.. #..",
    "G": ".## #.. #.# #.# .##", "H": "#.# #.# ### #.# #.#", "I": "### .#. .#. .#. ###",
    "J": "..# ..# ..# #.# .#.", "K": "#.# #.# ##. #.# #.#", "L": "#.. #.. #.. #.. ###",
    "M": "#.# ### ### #.# #.#", "N": "##. #.# #.# #.# #.#", "O": "### #.# #.# #.# ###",
    "P": "##. #.# ##. #.. #..", "Q": ".#. #.# #.# ##. .##", "R": "##. #.# ##. #.# #.#",
    "S": ".## #.. .#. ..# ##.", "T": "### .#. .#. .#. .#.", "U": "#.# #.# #.# #.# ###",
    "V": "#.# #.# #.# #.# .#.", "W": "#.# #.# ### ### #.#", "X": "#.# #.# .#. #.# #.#",
    "Y": "#.# #.# .#. .#. .#.", "Z": "### ..# .#. #.. ###", "0": "### #.# #.# #.# ###",
    "1": ".#. ##. .#. .#. ###", "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.",
    "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.", "6": ".## #.. ### #.# ###",
    "7": "### ..# .#. .#. .#.", "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
    "-": "... ... ### ... ...", " ": "... ... ... ... ...", "(": ".#. #.. #.. #.. .#.",
    ")": ".#. ..# ..# ..# .#.", ",": "... ... ... .#. #..", ".": "... ... ... ... .#.",
    "?": "##. ..# .#. ... .#.", "/": "..# ..# .#. #.. #..", "'": ".#. .#. ... ... ...",
    "&": ".#. #.# .#. #.# .##",
}
HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def big_text_width(text: str) -> int:
    return max(0, 4 * len(text) - 1)


def big_text_lines(text: str) -> list[str]:
    """`text` in the 3x5 font as 3 lines of half blocks (unknown characters become '?')."""
    glyphs = [[*FONT.get(ch, FONT["?"]).split(), "..."] for ch in text.upper()]
    lines = []
    for row in range(3):
        cells = []
        for g in glyphs:
            top, bottom = g[2 * row], g[2 * row + 1]
            cells.append("".join(HALF_BLOCKS[(t == "#", b == "#")]
                                 for t, b in zip(top, bottom, strict=True)))
        lines.append(" ".join(cells))
    return lines
