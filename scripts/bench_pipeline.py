"""Train-step throughput of the project's input pipeline vs its upper bound and vs the course code.

SphereCNN at 96x96, batch 128, one optimizer (Adam) step per batch, measured side by side in one run:

1. the real pipeline: ``lib.training.fit`` over a ``lib.imagecache`` uint8 cache (gather rows →
   random flip on the batch → float + normalize → model → CosFace head → step);
2. the upper bound: one pre-made float batch reused (model + head + step only);
3. the course code: a ``Dataset`` that opens and decodes each JPEG with PIL and applies
   ``transforms.Compose([Resize(96), RandomHorizontalFlip(), ToTensor(), Normalize(.5, .5)])`` every
   epoch through a ``DataLoader``, and the course report's ``AngularPenaltySMLoss`` with its
   per-sample Python loop building the softmax denominator (copied from the report).

(1) is a single ``fit`` call (as in a notebook: one optimizer, per-epoch timing from its history) whose
``eval_fn`` runs one round of (2) and of (3) between epochs, so the three alternate and a background
load that comes and goes hits all three alike. Reported per pipeline: the best round's wall-clock
throughput (the least disturbed by other processes on a shared machine), the median, and the median
per CPU-second of this process (insensitive to being descheduled). Images: LFW from ``lib.paths.SHARED_LFW`` when present,
else a few hundred generated JPEGs (250x250, like LFW) in a temporary folder.

Evaluation is measured beside training in the same rounds, as notebook 02 evaluates: (5) the images
embedded per second by ``lib.lfw_experiment.pair_set_features`` (each image and its mirror image in one
forward, in the inference precision, float32 on a CPU) with the model being trained, and (6) the pairs
scored per second by ``lib.lfw_experiment.score_pairs`` from those features (cosines, 10-fold threshold,
ROC, Angular Fisher score) on 5,000 pairs drawn among the round's images.

With ``--amp bf16``, (1) and (2) run the backbone in bfloat16 autocast on channels-last tensors (as
``fit(amp="bf16")`` does on a CPU), (3) stays float32 as the course wrote it, and a fourth round (4), the
upper bound in float32, prints the bf16 gain side by side.

    python scripts/bench_pipeline.py [--rounds 5] [--batches 2] [--threads 1] [--workers 0] [--amp off|bf16]
    python scripts/bench_pipeline.py --device cuda --model resnet18 --size 224 --batch-size 64 --amp auto

On a GPU (the second form, which ``make bench`` runs and which prints a skip message without CUDA), (1) and
(2) measure the pipeline against the model alone for the colab profile's ResNet-18 at 224 px; the course
round is left out (it is the SphereCNN homework's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

os.environ.setdefault("FACE_PROGRESS", "off")

from lib import paths  # noqa: E402
from lib.imagecache import build_cache  # noqa: E402
from lib.models import make_model  # noqa: E402
from lib.settings import RunSettings  # noqa: E402
from lib.lfw_experiment import PairSet, draw_pairs, inference_precision, pair_set_features, score_pairs  # noqa: E402
from lib.training import cuda_unavailable_reason, fit, normalize_batch, resolve_precision, train_step  # noqa: E402

BATCH_SIZE = 128
SIZE = 96
SCORED_PAIRS = 5000  # pairs scored per round in (6), half matched (fewer if the images cannot supply them)


# --------------------------------------------------------------------------------------------------
# The course report's loss, copied as written (sonnygeorge/sphereface, model.py at 0ac96a0; its bugs are
# listed in lib.losses.CourseSphereFaceHead and quoted in notebook 02); only for timing here.
# --------------------------------------------------------------------------------------------------
class AngularPenaltySMLoss(nn.Module):
    def __init__(self, in_features, out_features, eps=1e-7, m=None):
        super(AngularPenaltySMLoss, self).__init__()
        self.m = 4.0 if not m else m
        self.in_features = in_features
        self.out_features = out_features
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.eps = eps

    def forward(self, x, labels):
        assert len(x) == len(labels)
        assert torch.min(labels) >= 0
        assert torch.max(labels) < self.out_features

        for W in self.fc.parameters():
            W = F.normalize(W, p=2, dim=1)

        x = F.normalize(x, p=2, dim=1)

        wf = self.fc(x)

        numerator = torch.cos(
            self.m
            * torch.acos(
                torch.clamp(
                    torch.diagonal(wf.transpose(0, 1)[labels]),
                    -1.0 + self.eps,
                    1 - self.eps,
                )
            )
        )

        excl = torch.cat(
            [torch.cat((wf[i, :y], wf[i, y + 1 :])).unsqueeze(0) for i, y in enumerate(labels)],
            dim=0,
        )
        denominator = torch.exp(numerator) + torch.sum(torch.exp(excl), dim=1)
        L = numerator - torch.log(denominator)

        return -torch.mean(L)


class CourseDataset(torch.utils.data.Dataset):
    """Decode + transform every item on every access, as the course code did."""

    def __init__(self, files, labels):
        from torchvision import transforms

        self.files, self.labels = files, labels
        self.transform = transforms.Compose(
            [
                transforms.Resize(SIZE),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
            ]
        )

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        image = Image.open(self.files[index]).convert("RGB")
        return self.transform(image), self.labels[index]


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
def lfw_images(n: int) -> tuple[list[str], np.ndarray, str] | None:
    root = paths.SHARED_LFW / "lfw-deepfunneled"
    if not root.is_dir():
        return None
    files = sorted(str(p) for p in root.glob("*/*.jpg"))[:n]
    if len(files) < n:
        return None
    names = [Path(f).parent.name for f in files]
    _, labels = np.unique(names, return_inverse=True)
    return files, labels, f"LFW deep-funneled, first {n} files ({labels.max() + 1} identities)"


def generated_images(n: int, folder: Path, classes: int = 64) -> tuple[list[str], np.ndarray, str]:
    """Smooth random 250x250 JPEGs (upsampled noise, so they compress like photos, not like static)."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(small).resize((250, 250), Image.Resampling.BICUBIC).save(path, quality=90)
        files.append(str(path))
    return files, rng.integers(0, classes, n), f"{n} generated 250x250 JPEGs ({classes} classes)"


# --------------------------------------------------------------------------------------------------
# Measurements. (1) is one `fit` call over several epochs, exactly as a notebook trains; its `eval_fn`
# hook (called between epochs, outside the epoch timing) runs one round of (2) and one of (3), so the
# three alternate and share whatever load the machine has.
# --------------------------------------------------------------------------------------------------
class Clock:
    """Wall-clock and process-CPU seconds of a block; CPU time is immune to being descheduled by other
    processes on a shared machine (it misses work done in DataLoader worker processes)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self._sync()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def upper_bound_round(model, head, optimizer, scaler, batch, batch_labels, steps, device, precision="off") -> Clock:
    """The model alone: the project's training step on one pre-made batch, reused ``steps`` times."""
    model.train()
    with Clock(device) as clock:
        for _ in range(steps):
            train_step(model, head, optimizer, scaler, batch, batch_labels, precision=precision)
    return clock


def course_round(model, loss_fn, optimizer, loader, device) -> Clock:
    """The course's input pipeline (PIL per item through a DataLoader) feeding the same step."""
    model.train()
    with Clock(device) as clock:
        for images, labels in loader:
            train_step(model, loss_fn, optimizer, None, images.to(device), labels.to(device))
    return clock


def evaluation_round(model, pair_set: PairSet, device, amp) -> tuple[Clock, Clock]:
    """Notebook 02's evaluation: embed the pair set's images (flip-fused, one pass), then score its pairs."""
    with Clock(device) as embedding:
        features = pair_set_features(model, {"pairs": pair_set}, device=device, amp=amp)["pairs"]
    with Clock(device) as scoring:
        score_pairs(features, pair_set)
    return embedding, scoring


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="measured rounds per pipeline (after 1 warm-up)")
    parser.add_argument("--batches", type=int, default=2, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the course pipeline")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (skipped with a message when absent)")
    parser.add_argument("--model", default="spherecnn", help="spherecnn (96 px, the course network) | resnet18")
    parser.add_argument("--size", type=int, default=SIZE, help="input size in pixels (resnet18: 224 on a GPU)")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16", "auto"],
                        help="precision of (1) and (2); auto = bf16 on Ampere+ GPUs, fp16 on older ones")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA benchmark skipped: {cuda_unavailable_reason()}")
        return 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision(args.amp, device)
    batch_size = args.batch_size
    n = args.batches * batch_size
    with_course = args.model == "spherecnn"  # the course code is the SphereCNN homework's
    from lib.losses import make_head

    def network():
        options = {"input_size": args.size} if args.model == "spherecnn" else {}
        return make_model(args.model, embedding_dim=512, **options)

    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        files, labels_np, source = lfw_images(n) or generated_images(n, temp)
        labels = torch.as_tensor(labels_np, dtype=torch.int64)
        classes = int(labels.max()) + 1

        started = time.perf_counter()
        cache = build_cache(files, args.size, cache_dir=temp / "cache", key="bench", progress=False)
        cache_seconds = time.perf_counter() - started

        torch.manual_seed(0)
        model_real, head_real = network(), make_head("cosface", 512, classes)
        channels_last = precision != "off"
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model_bound = network().to(device, memory_format=memory_format)
        head_bound = make_head("cosface", 512, classes).to(device)
        bound_optimizer = torch.optim.Adam([*model_bound.parameters(), *head_bound.parameters()], lr=1e-3)
        bound_scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        bound_batch = normalize_batch(cache[:batch_size].to(device), *model_bound.input_normalization)
        bound_labels = labels[:batch_size].to(device)
        if precision != "off":  # round (4): the same upper bound in float32
            model_fp32, head_fp32 = network().to(device), make_head("cosface", 512, classes).to(device)
            fp32_optimizer = torch.optim.Adam([*model_fp32.parameters(), *head_fp32.parameters()], lr=1e-3)
        if with_course:
            model_course, loss_course = network().to(device), AngularPenaltySMLoss(512, classes).to(device)
            course_optimizer = torch.optim.Adam([*model_course.parameters(), *loss_course.parameters()], lr=1e-3)
            loader = torch.utils.data.DataLoader(
                CourseDataset(files, labels_np.tolist()), batch_size=batch_size, shuffle=True,
                num_workers=args.workers, persistent_workers=args.workers > 0,
            )

        clocks = {"real_cpu": [], "bound": [], "course": [], "bound_fp32": [], "embed": [], "score": []}
        identity = labels_np.astype(str)
        pair_index, same = draw_pairs(identity, SCORED_PAIRS // 2, SCORED_PAIRS // 2)
        scored = PairSet(cache, identity, np.array(files), pair_index, same)
        eval_amp = inference_precision(precision, device)
        cpu_mark = [time.process_time()]

        def interleave(model, head, epoch):
            clocks["real_cpu"].append(time.process_time() - cpu_mark[0])  # CPU time of the epoch just finished
            clocks["bound"].append(
                upper_bound_round(model_bound, head_bound, bound_optimizer, bound_scaler,
                                  bound_batch.contiguous(memory_format=memory_format), bound_labels,
                                  args.batches, device, precision=precision)
            )
            if precision != "off":
                clocks["bound_fp32"].append(
                    upper_bound_round(model_fp32, head_fp32, fp32_optimizer, None, bound_batch, bound_labels,
                                      args.batches, device)
                )
            if with_course:
                clocks["course"].append(course_round(model_course, loss_course, course_optimizer, loader, device))
            embedding, scoring = evaluation_round(model, scored, device, eval_amp)
            clocks["embed"].append(embedding)
            clocks["score"].append(scoring)
            cpu_mark[0] = time.process_time()
            return {}

        settings = RunSettings(head="cosface", model=args.model, image_size=args.size, epochs=args.rounds + 1,
                               batch_size=batch_size, lr=1e-3, seed=0, amp=precision)
        history = fit(settings, model_real, head_real, cache, labels, device=device, eval_fn=interleave,
                      progress=False).history
    bf16 = precision != "off"

    # Drop round 0 (warm-up) everywhere.
    names = ["real", "bound", *(["course"] if with_course else []), *(["bound_fp32"] if bf16 else []), "embed", "score"]
    items = {name: len(pair_index) if name == "score" else n for name in names}  # pairs for (6), images elsewhere
    wall = {"real": [n / s for s in history["seconds"][1:]],
            **{name: [items[name] / c.wall for c in clocks[name][1:]] for name in names if name != "real"}}
    cpu = {"real": [n / s for s in clocks["real_cpu"][1:]],
           **{name: [items[name] / c.cpu for c in clocks[name][1:]] for name in names if name != "real"}}
    if with_course and args.workers:
        cpu["course"] = []  # its work happens in worker processes, which process_time does not see
    best = {name: max(values) for name, values in wall.items()}
    median = {name: statistics.median(values) for name, values in wall.items()}
    per_cpu = {name: statistics.median(values) if values else float("nan") for name, values in cpu.items()}

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, device {device}{gpu}, {torch.get_num_threads()} thread(s), {args.model} at "
          f"{args.size}x{args.size}, batch {batch_size}, {args.rounds} rounds x {args.batches} batches (+1 warm-up "
          f"round), Adam lr 1e-3, (1)-(2) in {precision if bf16 else 'float32'}")
    print(f"images: {source}; cache built once in {cache_seconds:.2f} s ({n / cache_seconds:.0f} images/s)")
    rows = [
        ("(1) real pipeline: fit() on uint8 cache, flip on batch, cosface", "real"),
        ("(2) model only: one pre-made batch reused, cosface", "bound"),
        *([(f"(3) course: PIL decode + transforms per item (workers={args.workers}), loop loss", "course")]
          if with_course else []),
        *([("(4) model only in float32 (as (2), no autocast)", "bound_fp32")] if bf16 else []),
        (f"(5) evaluation: images embedded/s (flip-fused, {eval_amp if eval_amp != 'off' else 'float32'})", "embed"),
        (f"(6) evaluation: pairs scored/s ({len(pair_index)} pairs: cosine, 10-fold, ROC, AFS)", "score"),
    ]
    print(f"{'images/s (pairs/s for (6))':<70}{'best wall':>10}{'median wall':>12}{'median CPU':>11}")
    for label, name in rows:
        print(f"{label:<70}{best[name]:>10.1f}{median[name]:>12.1f}{per_cpu[name]:>11.1f}")
    ratio = best["real"] / best["bound"]
    print(f"ratio (1)/(2) pipeline / model only: {ratio:.3f} best wall, {median['real'] / median['bound']:.3f} "
          f"median wall, {per_cpu['real'] / per_cpu['bound']:.3f} median CPU (target >= 0.9 on best wall): "
          f"{'OK' if ratio >= 0.9 else 'BELOW TARGET'}")
    if with_course:
        print(f"speed-up (1)/(3): {best['real'] / best['course']:.2f}x best wall, "
              f"{median['real'] / median['course']:.2f}x median wall, "
              f"{per_cpu['real'] / per_cpu['course']:.2f}x median CPU")
    if bf16:
        print(f"{precision} gain (2)/(4): {best['bound'] / best['bound_fp32']:.2f}x best wall, "
              f"{median['bound'] / median['bound_fp32']:.2f}x median wall, "
              f"{per_cpu['bound'] / per_cpu['bound_fp32']:.2f}x median CPU")
    if device.type == "cuda":
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB "
              f"(torch.cuda.max_memory_allocated; all rounds, batch {batch_size})")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
