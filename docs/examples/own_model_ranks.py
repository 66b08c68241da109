"""Ranked lists of your own PyTorch model under LTA (the seed paper's Figure 1), in Python.

    python docs/examples/own_model_ranks.py                      # a stand-in model, synthreid
    python docs/examples/own_model_ranks.py --weights my_reid.pt --dataset market1501 --data-root /data/reid

Replace ``build_my_model`` by your network: anything that maps (N, 3, H, W) ImageNet-normalised
images to (N, D) features in eval mode. reidbench feeds it images in [0, 1] and owns the
normalisation (``ModuleEmbedder``), so the attack's budget is in pixel units.
"""

import argparse

import torch
import torchvision

from reidbench.attacks import LTA
from reidbench.attacks.evaluate import prepare_evalset
from reidbench.data import load_dataset
from reidbench.models import ModuleEmbedder
from reidbench.viz import attack_selected_queries, plot_ranked_lists, ranked_lists


def build_my_model() -> torch.nn.Module:
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()  # 512-d features
    return net


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", help="a state_dict saved with torch.save(model.state_dict(), ...)")
    ap.add_argument("--dataset", default="synthreid")
    ap.add_argument("--data-root")
    ap.add_argument("--synth-size", default="default")
    ap.add_argument("--input-size", default="256,128", help="H,W your model expects")
    ap.add_argument("--queries", default="0,17,42")
    ap.add_argument("--out", default="ranks.png")
    args = ap.parse_args(argv)

    net = build_my_model()
    if args.weights:
        net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    else:
        print("no --weights: a randomly initialised stand-in, so expect no true matches in the figure")
    h, w = (int(v) for v in args.input_size.split(","))
    model = ModuleEmbedder(net, input_size=(h, w)).eval()  # flip-TTA and L2-normalised features by default

    kw = {"size": args.synth_size} if args.dataset == "synthreid" else {}
    ds = load_dataset(args.dataset, args.data_root, **kw)
    evalset = prepare_evalset(model, ds)  # gallery features once
    queries = [int(q) for q in args.queries.split(",")]
    adv = attack_selected_queries(LTA(model, eps=5 / 255, steps=15), evalset, queries, model)
    lists = ranked_lists(model, ds, queries, adversarial={"LTA": adv}, evalset=evalset)
    print("written", plot_ranked_lists(lists, args.out, title="my model: clean vs LTA"))


if __name__ == "__main__":
    main()
