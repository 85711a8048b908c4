"""The official DCASE Task 2 corpora ssad can download: their archives, where they are and their checksums.

Checksums: the md5 values in `CORPORA` are the ones listed for each file on its Zenodo record, as
copied into the soundata loaders (github.com/soundata/soundata, `soundata/datasets/dcase2020task2.py`
and `soundata/datasets/dcase23_task2.py`); several also appear, independently, in other projects'
download scripts that checked them against the Zenodo API. Archives with `md5=None` have no published
checksum: for those the download is checked only by the zip CRCs (read while unpacking), and the
sha256 received is recorded in the manifest so a later run can be compared against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Archive", "Corpus", "CORPORA", "PARTS"]

PARTS = ("dev", "additional", "eval", "eval_ground_truth")


@dataclass(frozen=True)
class Archive:
    """One file to fetch: a zip unpacked into `<root>/<machine_type>/...`, or any other file placed at `<root>/<name>`.

    Attributes:
        name: file name, unique within its corpus (also the name of its `.part` and `.done` files).
        url: where to fetch it.
        md5: the published md5 hex digest, or None when no checksum is published.
        part: which portion of the corpus it belongs to, one of `PARTS`.
        machine_type: the machine type it holds; None for files that cover every type (ground truth).
    """

    name: str
    url: str
    md5: str | None
    part: str
    machine_type: str | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            msg = f"Archive {self.name!r}: part must be one of {PARTS}, got {self.part!r}"
            raise ValueError(msg)
        if self.md5 is not None and not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            msg = f"Archive {self.name!r}: md5 must be 32 lowercase hex digits or None, got {self.md5!r}"
            raise ValueError(msg)
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            msg = f"Archive name must be a plain file name, got {self.name!r}"
            raise ValueError(msg)

    @property
    def is_zip(self) -> bool:
        """Whether this archive is unpacked (a zip) or placed as it is."""
        return self.name.lower().endswith(".zip")


@dataclass(frozen=True)
class Corpus:
    """A named set of archives that together make one year's Task 2 data."""

    name: str
    description: str
    archives: tuple[Archive, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts this corpus offers, in `PARTS` order."""
        present = {a.part for a in self.archives}
        return tuple(p for p in PARTS if p in present)

    @property
    def machine_types(self) -> tuple[str, ...]:
        """The machine types this corpus covers, sorted case-insensitively."""
        return tuple(sorted({a.machine_type for a in self.archives if a.machine_type}, key=str.lower))


def _zenodo(record: str, name: str) -> str:
    """The direct-download URL of file `name` in Zenodo record `record`."""
    return f"https://zenodo.org/record/{record}/files/{name}?download=1"


# DCASE 2020 Task 2. Development: record 3678171; additional training: 3727685; evaluation test: 3841772.
# All 18 md5 values below are published (Zenodo file listings, via soundata's dcase2020task2 loader).
# The evaluation ground truth (eval_data_list.csv) was released later without a URL and checksum we
# could confirm, so it is not listed here rather than guessed.
_DCASE2020_MD5 = {
    "dev_data_fan.zip": "649bdfc06263ae7a838963f43b6641e6",
    "dev_data_pump.zip": "90e7091ef722b7238a7f1009365779cd",
    "dev_data_slider.zip": "da24a757719f0d94d5aa2d646bbfdc86",
    "dev_data_ToyCar.zip": "4dec75ca8d9f666aa9e4c1894a740501",
    "dev_data_ToyConveyor.zip": "03b6aa1bfd09a39d53af0ba39f71fa91",
    "dev_data_valve.zip": "34d2672f55bb041589ef79c10dc89934",
    "eval_data_train_fan.zip": "567798854130c8019df8b664c095ed1e",
    "eval_data_train_pump.zip": "4e33ae9c0db5cc88437675f5e317caee",
    "eval_data_train_slider.zip": "f84f186f4295fc23754abcdd1b0580a7",
    "eval_data_train_ToyCar.zip": "a5d4ccd498af70b04dd74b644b820006",
    "eval_data_train_ToyConveyor.zip": "0e808ac0b761e9fb13d5e0c65caff00d",
    "eval_data_train_valve.zip": "057cdd560caffb8305449541afd28c6d",
    "eval_data_test_fan.zip": "1eb9356a768cadfd0f2e59a5c57e578b",
    "eval_data_test_pump.zip": "23a8f8f924be218c69df67fe07360348",
    "eval_data_test_slider.zip": "0193c769073840332ce3aad84b1ccaa2",
    "eval_data_test_ToyCar.zip": "bea2bdd612f616be8f2b8eb087b32c7c",
    "eval_data_test_ToyConveyor.zip": "ccfcc9847c7d3404d7ee9d6d9e0b2ba2",
    "eval_data_test_valve.zip": "f69c551d2088691050d20cccca9d631c",
}
_DCASE2020_TYPES = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")


def _dcase2020() -> Corpus:
    """The DCASE 2020 Task 2 registry entry."""
    archives: list[Archive] = []
    for part, record, pattern in (
        ("dev", "3678171", "dev_data_{}.zip"),
        ("additional", "3727685", "eval_data_train_{}.zip"),
        ("eval", "3841772", "eval_data_test_{}.zip"),
    ):
        for machine_type in _DCASE2020_TYPES:
            name = pattern.format(machine_type)
            archives.append(Archive(name, _zenodo(record, name), _DCASE2020_MD5[name], part, machine_type))
    return Corpus(
        "dcase2020",
        "DCASE 2020 Task 2 (MIMII + ToyADMOS): development, additional training and evaluation test data",
        tuple(archives),
    )


# DCASE 2023 Task 2. Development: record 7882613; additional training: 7830345; evaluation test: 7860847.
# All 21 zip md5 values are published (Zenodo file listings, via soundata's dcase23_task2 loader).
# The evaluation ground truth is the organisers' list in the baseline repository, pinned to a commit;
# no checksum is published for it (md5=None: its sha256 goes to the manifest).
_DCASE2023_MD5 = {
    "dev_bearing.zip": "8a813bc8d8f156b5395bfccdfac7673c",
    "dev_fan.zip": "9348591e96fb0ad499a1e33b082562fc",
    "dev_gearbox.zip": "b6e55f6a31faa0fc8569ec0afdd53ccf",
    "dev_slider.zip": "b3f8dee36b4718c36d659a4fd1c4afe0",
    "dev_ToyCar.zip": "4e3bf15f4101ed4ed4f1fecde2e2b2a3",
    "dev_ToyTrain.zip": "6b02a6c65eebb3b8b1ae59a6b25bb897",
    "dev_valve.zip": "b2051a2022eadb53cd97581120811cae",
    "eval_data_bandsaw_train.zip": "9274dfe63de028743823f1123f8b4b47",
    "eval_data_grinder_train.zip": "17569c1f9df23621a0dbabc430684a35",
    "eval_data_shaker_train.zip": "35f821b5645b731fb5a1750e33b95fc3",
    "eval_data_ToyDrone_train.zip": "7fea367d1384a1521ae24f72203238de",
    "eval_data_ToyNscale_train.zip": "9332822f3e47afd984c01f2ecb5ca3af",
    "eval_data_ToyTank_train.zip": "b1fd3ab7de7561290df2d477de1c9d33",
    "eval_data_Vacuum_train.zip": "1c8de33d9a8c7850a1f7aaddb97d87be",
    "eval_data_bandsaw_test.zip": "2a8e8f39f6584ab366a8f4da52d4d7a6",
    "eval_data_grinder_test.zip": "631b3e1608b6077772829a6e68c82c77",
    "eval_data_shaker_test.zip": "ba98c98caa96051ec80e24e44b8fca56",
    "eval_data_ToyDrone_test.zip": "fdae7b8d1f4cadb2bea88bc93e2367db",
    "eval_data_ToyNscale_test.zip": "62f5f5043d8fb3a305b1c2e1025872de",
    "eval_data_ToyTank_test.zip": "f5639bf58c47169c622751f19c6fc321",
    "eval_data_Vacuum_test.zip": "a32524fd8c45b574a560685b38acc4e1",
}
_DCASE2023_DEV_TYPES = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
_DCASE2023_EVAL_TYPES = ("bandsaw", "grinder", "shaker", "ToyDrone", "ToyNscale", "ToyTank", "Vacuum")
_DCASE2023_GROUND_TRUTH_URL = (
    "https://raw.githubusercontent.com/nttcslab/dcase2023_task2_baseline_ae/"
    "2605ba1ae306d087d87e8fac8e19c20068e989e2/datasets/eval_data_list_2023.csv"
)


def _dcase2023() -> Corpus:
    """The DCASE 2023 Task 2 registry entry."""
    archives: list[Archive] = []
    for machine_type in _DCASE2023_DEV_TYPES:
        name = f"dev_{machine_type}.zip"
        archives.append(Archive(name, _zenodo("7882613", name), _DCASE2023_MD5[name], "dev", machine_type))
    for part, record, suffix in (("additional", "7830345", "train"), ("eval", "7860847", "test")):
        for machine_type in _DCASE2023_EVAL_TYPES:
            name = f"eval_data_{machine_type}_{suffix}.zip"
            archives.append(Archive(name, _zenodo(record, name), _DCASE2023_MD5[name], part, machine_type))
    archives.append(
        Archive("eval_data_list_2023.csv", _DCASE2023_GROUND_TRUTH_URL, None, "eval_ground_truth")
    )
    return Corpus(
        "dcase2023",
        "DCASE 2023 Task 2 (MIMII DG + ToyADMOS2, first-shot): development, additional training and evaluation data",
        tuple(archives),
    )


CORPORA: dict[str, Corpus] = {corpus.name: corpus for corpus in (_dcase2020(), _dcase2023())}
