"""Market-1501 (Zheng et al., ICCV 2015)."""

from ..registry import DATASETS
from .base import FolderLayoutDataset

__all__ = ["Market1501"]


@DATASETS.register(
    "market1501",
    aliases=("market", "market-1501"),
    paper="Zheng et al., Scalable Person Re-identification: A Benchmark, ICCV 2015",
)
class Market1501(FolderLayoutDataset):
    """Market-1501: 1,501 identities, 6 cameras.

    Layout (release ``Market-1501-v15.09.15``): ``bounding_box_train/`` (12,936 images, 751 ids),
    ``query/`` (3,368 images, 750 ids), ``bounding_box_test/`` (19,732 images; 15,913 after the
    3,819 junk images of pid -1 are dropped). File ``0002_c1s1_000451_03.jpg`` = pid 0002, camera 1,
    sequence 1, frame 451, detection 3. Junk (pid -1) is dropped from every split; distractors
    (pid 0) stay in the gallery as negatives; camids are 0-based; train pids relabelled 0..750.
    ``root`` may be the release folder itself or a folder holding it (``market1501/...`` as torchreid).
    """

    name = "market1501"
    display_name = "Market-1501"
    candidates = ("", "Market-1501-v15.09.15", "market1501", "market1501/Market-1501-v15.09.15", "Market-1501")
    cam_range = (1, 6)
