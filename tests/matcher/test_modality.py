"""A third modality through ``ModalityMatcher`` alone: a toy "iris" of fixed-length vectors.

The toy brings its own index (exhaustive NumPy, no FAISS) and its own rule for several probes
(two eyes are independent evidence, so their scores add).  It is registered, then enrolled,
identified, verified, fused with a face, deleted and rebuilt from the store after a restart
through ``Galleries`` on a real SQLite store: nothing in the galleries code knows of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from matcher import fusion, modalities
from matcher.calibration import Calibration
from matcher.errors import InvalidArgument, NotFound
from matcher.galleries import EnrollItem, Galleries
from matcher.index import SubjectHits
from matcher.modality import Modality, ModalityMatcher
from matcher.policy import IndexPolicy
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Template, normalise
from tests.conftest import noisy, unit_vectors

IRIS = Modality(9, "iris")
IRIS_MODEL, IRIS_DIM = "toy-iris@1", 64
FACE_MODEL, FACE_DIM = "m", 32


class BruteForceIndex:
    """Every subject's templates in a dict; a search compares the probe with all of them."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.applied_sequence = 0
        self.rebuilding = False
        self.index_type = "numpy-exhaustive"
        self._templates: dict[str, np.ndarray] = {}

    def stack(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(vectors, dtype=np.float32).reshape(-1, self.dimension)

    def set_subject(self, subject_id: str, template_ids: np.ndarray, vectors: np.ndarray, sequence: int = 0) -> None:
        self._templates.pop(subject_id, None)
        if len(template_ids):
            self._templates[subject_id] = self.stack(vectors)
        self.applied_sequence = max(self.applied_sequence, sequence)

    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, vectors: np.ndarray) -> None:
        for subject, vector in zip(subject_ids, self.stack(vectors)):
            self._templates[subject] = np.vstack([self._templates.get(subject, self.stack([])), vector[None]])

    def remove_subject(self, subject_id: str, sequence: int = 0) -> int:
        self.applied_sequence = max(self.applied_sequence, sequence)
        return len(self._templates.pop(subject_id, ()))

    def mark_applied(self, sequence: int) -> None:
        self.applied_sequence = max(self.applied_sequence, sequence)

    def bulk_loading(self):
        return contextlib.nullcontext()

    def apply_policy(self) -> None:
        pass

    def wait_for_build(self, timeout: float | None = None) -> None:
        pass

    @property
    def size(self) -> int:
        return sum(len(v) for v in self._templates.values())

    @property
    def subject_count(self) -> int:
        return len(self._templates)

    def contains(self, subject_id: str) -> bool:
        return subject_id in self._templates

    def subject_ids(self) -> list[str]:
        return list(self._templates)

    def search(self, probes: np.ndarray, top_subjects: int) -> list[SubjectHits]:
        hits = []
        for probe in probes:
            best = sorted(((float(np.max(v @ probe)), s) for s, v in self._templates.items()), reverse=True)[:top_subjects]
            hits.append(SubjectHits([s for _, s in best], np.array([b for b, _ in best], dtype=np.float32)))
        return hits

    def best_similarity(self, probes: np.ndarray, subject_id: str) -> float | None:
        enrolled = self._templates.get(subject_id)
        return None if enrolled is None or len(probes) == 0 else float(np.max(probes @ enrolled.T))

    def memory_bytes(self) -> int:
        return sum(v.nbytes for v in self._templates.values())

    def save(self, path: Path) -> None:
        """No snapshot: a restart rebuilds this index from the store."""


class IrisModality(ModalityMatcher):
    modality = IRIS
    independent_probes = True  # a left and a right eye

    def check_settings(self, spec: ModalitySpec, field: str) -> None:
        if spec.dimension != IRIS_DIM:
            raise InvalidArgument(f"{field}.dimension", f"iris codes here have {IRIS_DIM} values")

    def check_template(self, template: Template, spec: ModalitySpec, field: str) -> None:
        if template.vector.shape != (spec.dimension,):
            raise InvalidArgument(f"{field}.vector", f"expected {spec.dimension} values")

    def decode(self, data: bytes, field: str) -> np.ndarray:
        return normalise(np.frombuffer(data, dtype="<f4"), field)

    def payload(self, vector: np.ndarray) -> bytes:
        return np.asarray(vector, dtype="<f4").tobytes()

    def from_payload(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype="<f4")

    def new_index(self, spec: ModalitySpec, policy: IndexPolicy, vector_dir: Path | None) -> BruteForceIndex:
        return BruteForceIndex(spec.dimension)

    def load_index(self, spec: ModalitySpec, policy: IndexPolicy, path: Path, vector_dir: Path | None) -> None:
        return None

    def default_calibration(self, spec: ModalitySpec) -> Calibration:
        return Calibration.null_model(spec.dimension)


@pytest.fixture
def iris_registered():
    modalities.register(IrisModality())
    yield
    modalities.unregister(IRIS)


def open_galleries(path: Path) -> Galleries:
    return Galleries(SQLiteStore(path / "s.sqlite3"), path / "snapshots", policy=IndexPolicy(background_build=False))


def face(v) -> Template:
    return Template(Modality.FACE, FACE_MODEL, v)


def iris(v) -> Template:
    return Template(IRIS, IRIS_MODEL, v)


def test_a_registered_third_modality_enrols_identifies_verifies_fuses_and_deletes(tmp_path, iris_registered):
    galleries = open_galleries(tmp_path)
    specs = (ModalitySpec(Modality.FACE, FACE_MODEL, FACE_DIM), ModalitySpec(IRIS, IRIS_MODEL, IRIS_DIM))
    galleries.create(GalleryRecord("g", 1e-4, specs))
    faces, left, right = unit_vectors(40, FACE_DIM, 1), unit_vectors(40, IRIS_DIM, 2), unit_vectors(40, IRIS_DIM, 3)
    outcomes = galleries.enroll(
        [EnrollItem("g", f"s{i}", (face(faces[i]), iris(left[i]), iris(right[i]))) for i in range(40)]
    )
    assert all(o.result.sequence for o in outcomes)
    assert {s.modality: s.templates for s in galleries.statistics(["g"])[0].indexes} == {"face": 40, "iris": 80}

    probe_left, probe_right = noisy(left[7:8], 0.8, 4)[0], noisy(right[7:8], 0.8, 5)[0]
    probe_face = noisy(faces[7:8], 0.8, 6)[0]
    # Iris alone: the two eyes add up.
    (alone,) = galleries.identify([iris(probe_left), iris(probe_right)], ["g"], top=1)
    one_eye = galleries.identify([iris(probe_left)], ["g"], top=1)[0]
    assert alone.subject_id == "s7" and alone.modality_scores["iris"] > one_eye.modality_scores["iris"]
    # Fused with a face: each modality's score is reported, and the fused score is -log10 of the
    # chance that two independent impostor scores sum that high (less than the plain sum).
    (fused,) = galleries.identify([face(probe_face), iris(probe_left), iris(probe_right)], ["g"], top=1)
    assert fused.subject_id == "s7" and set(fused.modality_scores) == {"face", "iris"}
    assert fused.score == pytest.approx(fusion.independent(list(fused.modality_scores.values())), abs=1e-5)
    assert fused.score < sum(fused.modality_scores.values())
    assert fused.modality_scores["iris"] == pytest.approx(alone.modality_scores["iris"], abs=1e-5)

    verification = galleries.verify("g", "s7", [face(probe_face), iris(probe_left), iris(probe_right)])
    assert verification.match and verification.score == pytest.approx(fused.score, abs=1e-4)
    assert not galleries.verify("g", "s8", [iris(probe_left), iris(probe_right)]).match

    with pytest.raises(InvalidArgument, match="expected 64 values"):
        galleries.identify([iris(unit_vectors(1, 32, 9)[0])], ["g"])

    galleries.remove("g", "s7")
    assert all(c.subject_id != "s7" for c in galleries.identify([iris(probe_left), iris(probe_right)], ["g"], top=40))
    with pytest.raises(NotFound):
        galleries.verify("g", "s7", [iris(probe_left)])

    # A restart rebuilds the toy's index from the store (it keeps no snapshot).
    galleries.snapshot()
    galleries.store.close()
    reopened = open_galleries(tmp_path)
    assert reopened.identify([iris(left[3]), iris(right[3])], ["g"], top=1)[0].subject_id == "s3"
    assert {s.modality: s.templates for s in reopened.statistics(["g"])[0].indexes} == {"face": 39, "iris": 78}


def test_a_gallery_of_an_unregistered_modality_is_refused_by_field(tmp_path):
    galleries = open_galleries(tmp_path)
    with pytest.raises(InvalidArgument) as refused:
        galleries.create(GalleryRecord("g", 1e-4, (ModalitySpec(IRIS, IRIS_MODEL, IRIS_DIM),)))
    assert refused.value.field == "modalities[0].modality"
