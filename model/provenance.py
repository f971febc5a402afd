"""Where a run's labels come from, in one value with one wording.

    p = Provenance.of(untrained=False, random_features=True)
    p.tag        # "RANDOM FEATURES"  (badges, flags, plot titles)
    p.reason     # "random extractor weights: labels hold only for a model trained on ..."
    p.note       # the one-line warning printed on stderr at start
    p.fields()   # {"untrained": False, "random_features": True}: the log records' fields
    Provenance.from_record(record)

The log contract keeps the two boolean fields `untrained` and `random_features`; this is the
only place that turns them into words.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Provenance(enum.Enum):
    TRAINED = "trained"  # a trained checkpoint on features from real extractor weights
    RANDOM_FEATURES = "random_features"  # trained, but on features from random extractors
    UNTRAINED = "untrained"  # random JCA weights: no checkpoint

    @classmethod
    def of(cls, untrained: bool, random_features: bool) -> Provenance:
        if untrained:
            return cls.UNTRAINED
        return cls.RANDOM_FEATURES if random_features else cls.TRAINED

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Provenance:
        """From a log record, event or status dict (missing fields = False)."""
        return cls.of(bool(record.get("untrained")), bool(record.get("random_features")))

    @property
    def untrained(self) -> bool:
        return self is Provenance.UNTRAINED

    @property
    def random_features(self) -> bool:
        """Random extractor weights (an untrained run also uses them)."""
        return self is not Provenance.TRAINED

    def fields(self) -> dict[str, bool]:
        return {"untrained": self.untrained, "random_features": self.random_features}

    @property
    def tag(self) -> str:
        return _TAG[self]

    @property
    def reason(self) -> str:
        return _REASON[self]

    @property
    def note(self) -> str:
        """The start-up warning line ('' for a trained run)."""
        return f"{self.tag}: {self.reason} ({_FIX[self]})" if self.tag else ""


_TAG = {Provenance.TRAINED: "", Provenance.RANDOM_FEATURES: "RANDOM FEATURES",
        Provenance.UNTRAINED: "UNTRAINED"}
_REASON = {
    Provenance.TRAINED: "",
    Provenance.RANDOM_FEATURES: "random extractor weights: labels hold only for a model "
                                "trained on these same random features",
    Provenance.UNTRAINED: "random weights: the labels are meaningless",
}
_FIX = {Provenance.TRAINED: "", Provenance.RANDOM_FEATURES: "python -m model.weights fetch for "
        "real ones", Provenance.UNTRAINED: "pass --checkpoint FILE"}
