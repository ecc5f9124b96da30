"""Measure how hard the synthetic dataset is, overall and per group (the planted disparity).

Three measurements on a generated preset (default: ``default``, seed 0):

1. **Group classification, linear baseline**: PCA (100 components) + logistic regression on 32x32
   pixels, FairFace-style train -> val.
2. **Group classification, small CNN**: four conv blocks at 64x64, a few epochs of Adam, accuracy
   per group on val.
3. **Verification, small CNN**: the same architecture trained as an identity classifier on the LFW
   View 1 DevTrain people; its 128-d embeddings scored by cosine similarity on ``pairsDevTest.txt``
   (accuracy at the best threshold, and at the threshold that is best on ``pairsDevTrain.txt``), plus
   per-group ROC AUC over *all* same-group DevTest image pairs (matched vs different people of the
   same group, the hard impostors).

The targets: overall CNN accuracies in 60-90 % (neither failing nor saturating), and per-group numbers
that fall from ``Group A`` to ``Group G`` as ``lib.synthetic.GROUP_DIFFICULTY`` plants (the Spearman
correlation between difficulty and accuracy is printed).

Usage::

    python scripts/calibrate_synthetic.py [--preset default] [--seed 0] [--root DIR] [--epochs 12]
                                          [--threads 2] [--json results.json]

Takes about 1.5 minutes on two idle CPU cores (generation aside); several times longer when the
cores are shared.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from lib import synthetic
from lib.labels import SYNTHETIC_GROUPS

LFW_CROP = (50, 40, 200, 190)  # a 150-pixel box around the face of a 250x250 LFW-style image


# ------------------------------------------------------------------------------------------ loading
def load_images(files, size: int, crop=None) -> np.ndarray:
    """(N, size, size, 3) uint8; JPEG decoded at reduced scale (``draft``) for speed."""
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for k, file in enumerate(files):
        with Image.open(file) as image:
            image.draft("RGB", (2 * size, 2 * size))
            image = image.convert("RGB")
            if crop is not None:
                scale = image.width / synthetic.LFW_SIZE  # draft may have shrunk it
                image = image.crop(tuple(round(c * scale) for c in crop))
            out[k] = np.asarray(image.resize((size, size), Image.BILINEAR))
    return out


def read_fairface(root: Path, split: str) -> pd.DataFrame:
    table = pd.read_csv(root / "fairface" / f"fairface_label_{split}.csv")
    table["path"] = [str(root / "fairface" / f) for f in table["file"]]
    table["group_id"] = table["race"].map({g: i for i, g in enumerate(SYNTHETIC_GROUPS)})
    return table


def read_people(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text().splitlines()[1:]
    return [(name, int(count)) for name, count in (line.split("\t") for line in lines)]


def read_pairs(path: Path) -> list[tuple[str, int, str, int, bool]]:
    pairs = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) == 3:
            pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2]), True))
        else:
            pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3]), False))
    return pairs


def lfw_image(root: Path, name: str, index: int) -> str:
    return str(root / "lfw" / synthetic.LFW_IMAGE_FOLDER / name / f"{name}_{index:04d}.jpg")


# ------------------------------------------------------------------------------------------- models
class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-maxpool blocks (64 -> 4 pixels), a 128-d embedding, a linear classifier."""

    def __init__(self, classes: int, width: int = 16, embedding: int = 128):
        super().__init__()
        blocks, channels = [], 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            blocks += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*blocks, nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels * 16, embedding),
                                      nn.BatchNorm1d(embedding))
        self.classifier = nn.Linear(embedding, classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.embed(x)))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips (per sample) and one random shift of up to 4 pixels (per batch)."""
    flip = torch.rand(len(batch), generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    dx, dy = torch.randint(-4, 5, (2,), generator=generator).tolist()
    padded = F.pad(batch, (4, 4, 4, 4), mode="replicate")
    return padded[:, :, 4 + dy:4 + dy + batch.shape[2], 4 + dx:4 + dx + batch.shape[3]]


def train(images: np.ndarray, labels: np.ndarray, classes: int, epochs: int, seed: int, batch: int = 64) -> SmallCNN:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SmallCNN(classes)
    x, y = to_tensor(images), torch.as_tensor(labels, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            if len(index) < 2:
                continue
            loss = F.cross_entropy(model(augment(x[index], generator)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: SmallCNN, images: np.ndarray, embed: bool = False, batch: int = 256) -> np.ndarray:
    x = to_tensor(images)
    run = model.embed if embed else model
    return torch.cat([run(x[s:s + batch]) for s in range(0, len(x), batch)]).numpy()


# ------------------------------------------------------------------------------------------ metrics
def per_group_accuracy(correct: np.ndarray, groups) -> pd.Series:
    return pd.Series(correct, dtype=float).groupby(np.asarray(groups)).mean().reindex(SYNTHETIC_GROUPS)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximizing accuracy of ``score >= threshold`` (brute force over midpoints)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[1:] + order[:-1]) / 2, [order[-1] + 1e-6]])
    accuracy = ((scores[None, :] >= candidates[:, None]) == same[None, :]).mean(axis=1)
    best = int(np.argmax(accuracy))
    return float(candidates[best]), float(accuracy[best])


def disparity_check(values: pd.Series) -> float:
    """Spearman correlation of per-group values with the planted difficulty (negative = as planted)."""
    return float(spearmanr([synthetic.GROUP_DIFFICULTY[g] for g in values.index], values.to_numpy())[0])


def cosine_scores(embeddings: dict, pairs) -> tuple[np.ndarray, np.ndarray]:
    a = np.stack([embeddings[(n1, i1)] for n1, i1, _, _, _ in pairs])
    b = np.stack([embeddings[(n2, i2)] for _, _, n2, i2, _ in pairs])
    return np.sum(a * b, axis=1), np.array([same for *_, same in pairs])


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--identity-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    root = synthetic.ensure_synthetic(args.preset, args.seed, args.root)
    print(f"data: {root} (preset {args.preset!r}, seed {args.seed})")
    results: dict = {"preset": args.preset, "seed": args.seed, "generator_version": synthetic.GENERATOR_VERSION}

    # 1-2. group classification on the FairFace-style set
    train_table, val_table = read_fairface(root, "train"), read_fairface(root, "val")
    train_64, val_64 = load_images(train_table["path"], 64), load_images(val_table["path"], 64)
    flat = lambda images: images[:, ::2, ::2].reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    baseline = make_pipeline(StandardScaler(), PCA(100, random_state=0), LogisticRegression(max_iter=3000, C=0.1))
    baseline.fit(flat(train_64), train_table["group_id"])
    baseline_correct = baseline.predict(flat(val_64)) == val_table["group_id"].to_numpy()
    baseline_groups = per_group_accuracy(baseline_correct, val_table["race"])
    t0 = time.perf_counter()
    cnn = train(train_64, train_table["group_id"].to_numpy(), len(SYNTHETIC_GROUPS), args.epochs, args.seed)
    cnn_correct = predict(cnn, val_64).argmax(1) == val_table["group_id"].to_numpy()
    cnn_groups = per_group_accuracy(cnn_correct, val_table["race"])
    print(f"\nGroup classification on val ({len(val_table)} images, chance {1 / 7:.3f}); CNN trained "
          f"{args.epochs} epochs in {time.perf_counter() - t0:.0f} s")
    table = pd.DataFrame({"difficulty": pd.Series(synthetic.GROUP_DIFFICULTY), "PCA+logreg": baseline_groups,
                          "CNN": cnn_groups, "n": val_table["race"].value_counts().reindex(SYNTHETIC_GROUPS)})
    print(table.round(3).to_string())
    print(f"overall: PCA+logreg {baseline_correct.mean():.3f}, CNN {cnn_correct.mean():.3f}; Spearman(difficulty, "
          f"accuracy): PCA+logreg {disparity_check(baseline_groups):+.2f}, CNN {disparity_check(cnn_groups):+.2f}")
    results["group_classification"] = {
        "pca_logreg": {"overall": float(baseline_correct.mean()), "per_group": baseline_groups.round(4).to_dict(),
                       "spearman_with_difficulty": disparity_check(baseline_groups)},
        "cnn": {"overall": float(cnn_correct.mean()), "per_group": cnn_groups.round(4).to_dict(),
                "spearman_with_difficulty": disparity_check(cnn_groups), "epochs": args.epochs},
    }

    # 3. verification: identity classifier on View 1 DevTrain people, cosine on DevTest pairs
    lfw = root / "lfw"
    identities = pd.read_csv(lfw / "identities.csv").set_index("name")
    train_people = read_people(lfw / "peopleDevTrain.txt")
    test_people = read_people(lfw / "peopleDevTest.txt")
    train_keys = [(name, i) for name, count in train_people for i in range(1, count + 1)]
    test_keys = [(name, i) for name, count in test_people for i in range(1, count + 1)]
    label_of = {name: k for k, (name, _) in enumerate(train_people)}
    train_images = load_images([lfw_image(root, *key) for key in train_keys], 64, LFW_CROP)
    test_images = load_images([lfw_image(root, *key) for key in test_keys], 64, LFW_CROP)
    t0 = time.perf_counter()
    identity_cnn = train(train_images, np.array([label_of[name] for name, _ in train_keys]), len(train_people),
                         args.identity_epochs, args.seed)
    normalize = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    embeddings = dict(zip(train_keys, normalize(predict(identity_cnn, train_images, embed=True))))
    test_embeddings = normalize(predict(identity_cnn, test_images, embed=True))
    embeddings.update(zip(test_keys, test_embeddings))
    train_scores, train_same = cosine_scores(embeddings, read_pairs(lfw / "pairsDevTrain.txt"))
    test_pairs = read_pairs(lfw / "pairsDevTest.txt")
    test_scores, test_same = cosine_scores(embeddings, test_pairs)
    threshold_train, _ = best_threshold(train_scores, train_same)
    threshold_test, accuracy_best = best_threshold(test_scores, test_same)
    accuracy_transfer = float(((test_scores >= threshold_train) == test_same).mean())
    pair_groups = [identities.loc[n1, "group"] for n1, *_ in test_pairs]
    pair_correct = (test_scores >= threshold_test) == test_same
    pair_by_group = per_group_accuracy(pair_correct, pair_groups)

    # per group: every DevTest image pair within the group (genuine vs same-group impostor), ROC AUC
    names = np.array([name for name, _ in test_keys])
    groups_of_images = identities.loc[names, "group"].to_numpy()
    auc = {}
    for group in SYNTHETIC_GROUPS:
        members = np.flatnonzero(groups_of_images == group)
        first, second = np.triu_indices(len(members), k=1)
        same = names[members[first]] == names[members[second]]
        if same.all() or not same.any():
            auc[group] = float("nan")
            continue
        scores = np.sum(test_embeddings[members[first]] * test_embeddings[members[second]], axis=1)
        auc[group] = float(roc_auc_score(same, scores))
    auc = pd.Series(auc)
    print(f"\nVerification on pairsDevTest ({len(test_pairs)} pairs); identity CNN "
          f"({len(train_people)} DevTrain people, "
          f"{len(train_keys)} images, {args.identity_epochs} epochs) trained in {time.perf_counter() - t0:.0f} s")
    print(f"accuracy at the best threshold {accuracy_best:.3f} (t={threshold_test:.3f}); at DevTrain's best "
          f"threshold {accuracy_transfer:.3f} (t={threshold_train:.3f})")
    table = pd.DataFrame({"difficulty": pd.Series(synthetic.GROUP_DIFFICULTY), "pair accuracy": pair_by_group,
                          "pairs": pd.Series(pair_groups).value_counts().reindex(SYNTHETIC_GROUPS),
                          "same-group AUC": auc})
    print(table.round(3).to_string())
    print(f"Spearman(difficulty, value): pair accuracy {disparity_check(pair_by_group):+.2f}, "
          f"same-group AUC {disparity_check(auc):+.2f}")
    results["verification"] = {
        "dev_test_accuracy_best_threshold": accuracy_best, "dev_test_accuracy_devtrain_threshold": accuracy_transfer,
        "threshold_best": threshold_test, "threshold_devtrain": threshold_train,
        "per_group_pair_accuracy": pair_by_group.round(4).to_dict(), "per_group_same_group_auc": auc.round(4).to_dict(),
        "spearman_pair_accuracy": disparity_check(pair_by_group), "spearman_auc": disparity_check(auc),
        "identity_epochs": args.identity_epochs,
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ntotal {results['seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
