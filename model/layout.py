"""The AVE data layout and the model window, as plain constants (no h5py, no torch).

    from model.layout import SEGMENTS, VISUAL_SHAPE   # 10 segments a window, (7, 7, 512)

`model.data` reads and writes files in this layout; the live window (`streamer.window`), the
segmenter and the annotations reader only need the numbers, so they import them from here.
"""

SEGMENTS = 10  # segments (seconds) per AVE clip and per model window
AUDIO_DIM = 128  # VGGish embedding
VISUAL_SHAPE = (7, 7, 512)  # VGG19 pool5, channels last
FEATURE_KEY = "avadataset"  # the dataset name inside every AVE h5 file
ORDER_KEY = "order"  # ... and inside the *_order.h5 split files
SPLITS = ("train", "val", "test")
PAD_MODES = ("repeat-first", "zeros")  # warm-up padding of a window with fewer segments
