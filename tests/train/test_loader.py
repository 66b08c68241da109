"""The DataLoader path of training (issue 20): workers and streamed decoding change how the rows of
a batch arrive, never which rows nor what the model learns."""

import pytest
import torch

from reidbench.data import CorruptImageError, Sample, load_dataset, load_images
from reidbench.data.loader import StreamedImages, batch_rows, default_workers
from reidbench.defenses import ProactiveDefense
from reidbench.models import build_architecture
from reidbench.train import Recipe, train_model

FAST = Recipe(name="test", epochs=2, batch_size=32, lr=2e-3, pad=4)


@pytest.fixture(scope="module")
def tiny(tiny_synth):
    ds = load_dataset("synthreid", tiny_synth)
    return ds, load_images(ds.train, progress=False)


def fresh(n_classes):
    torch.manual_seed(0)
    return build_architecture("resnet-small", n_classes, widths=(8, 16, 32, 48))


def test_streamed_images_decode_the_pixels_the_cache_holds(tiny):
    ds, tr = tiny
    streamed = StreamedImages(ds.train)
    assert len(streamed) == len(tr.images)
    assert torch.equal(streamed[3], tr.images[3])
    assert torch.equal(torch.stack(streamed[2:5]), tr.images[2:5])
    assert torch.equal(torch.stack(streamed[torch.tensor([7, 1])]), tr.images[[7, 1]])


def test_streaming_a_split_with_a_missing_file_fails_before_training_and_names_it(tiny, tmp_path):
    ds, _ = tiny
    gone = Sample(str(tmp_path / "gone.jpg"), 0, 0)
    with pytest.raises(CorruptImageError, match="gone.jpg"):
        StreamedImages([*ds.train[:3], gone])


def test_batch_rows_keep_the_batches_and_their_order_with_any_number_of_workers(tiny):
    _, tr = tiny
    batches = [torch.tensor([5, 0, 9]), [2, 2, 31], [40]]
    for workers in (0, 2):
        got = list(batch_rows(tr.images, batches, workers=workers))
        assert len(got) == 3
        for b, rows in zip(batches, got):
            assert torch.equal(rows, tr.images[torch.as_tensor(b)])
    # images of varying size come as lists, as decoded splits of varying size do
    mixed = [torch.zeros(3, 8, 4, dtype=torch.uint8), torch.ones(3, 6, 4, dtype=torch.uint8)]
    rows = next(iter(batch_rows(mixed, [[1, 0]], workers=1)))
    assert isinstance(rows, list) and [r.shape[1] for r in rows] == [6, 8]
    with pytest.raises(ValueError, match="workers"):
        batch_rows(tr.images, batches, workers=-1)


def test_workers_and_streaming_give_the_weights_of_the_in_process_loop(tiny):
    """Two epochs with the PK sampler, pad/crop/flip and PD's augmentation (its draws come from the
    engine's generator): the same weights, bit for bit, fetched in this process, by two workers, and
    decoded from the files by two workers -- and with PD writing into the engine's batches."""
    ds, tr = tiny
    n = int(tr.pids.max()) + 1
    pd = ProactiveDefense()
    kw = dict(seed=4, progress=False)
    ref = train_model(fresh(n), tr.images, tr.pids, FAST, batch_train_transform=pd.batch_train_transform,
                      **kw).model.state_dict()
    engine_pd = pd.training_hooks(None, tr.pids).batch_train_transform  # what train_preset runs: in place
    for images, workers in ((tr.images, 2), (StreamedImages(ds.train), 2), (StreamedImages(ds.train), 0)):
        got = train_model(fresh(n), images, tr.pids, FAST, workers=workers, batch_train_transform=engine_pd,
                          **kw).model.state_dict()
        for k in ref:
            assert torch.equal(ref[k], got[k]), (type(images).__name__, workers, k)


def test_workers_default_to_none_on_a_cpu_and_some_beside_a_gpu():
    assert default_workers("cpu") == 0
    assert 1 <= default_workers("cuda") <= 4
