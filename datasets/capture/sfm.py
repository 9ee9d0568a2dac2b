"""Structure from motion with pycolmap: SIFT features, matching of chosen image pairs, mapping.

Each step works in batches (a few images, a few dozen pairs) so that progress and ETA update
and Ctrl-C is answered within a batch. Choices, measured on beer (71 phone photos, a walk round a
can) and Strecha's scenes (surveyed cameras), bench/results/process-cpu.json:
- features: SIFT on the CPU at 1600 px at most (COLMAP's default is 3200: 4x the time);
- pairs (`match_capture`): each image with its SEQUENTIAL_OVERLAP successors in name order; when
  those match (a walk), loops are closed by position in a first map of the walk; otherwise every
  pair up to EXHAUSTIVE_MAX images, above that the most similar images by a bag of visual words;
- mapping: COLMAP's incremental mapper, then a bundle adjustment that also frees the principal
  point, kept where it pays (`refine`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from splat.errors import InputError

EXHAUSTIVE_MAX = 100
SEQUENTIAL_OVERLAP = 10
RETRIEVAL_NEIGHBOURS = 8
MIN_STEP_INLIERS = 15  # verified matches between consecutive images that make them a step of a walk
WALK_SHARE = 0.8  # of consecutive images: a walk when this many are steps
LOOP_NEIGHBOURS = 10
LOOP_MAX_ANGLE = 45.0  # degrees between optical axes for a loop pair
PRINCIPAL_POINT_GAIN = 0.01  # refining the principal point must lower the reprojection error this much
OUTLIER_FACTOR = 2.5  # points whose reprojection error is above this many times the median are dropped
OUTLIER_ROUNDS = 3
MAX_FEATURE_SIDE = 1600


def import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise InputError(
            "posing photos or video needs pycolmap: pip install 'splat[capture]' (or pip install pycolmap)"
        ) from None
    return pycolmap


def quiet_logs(folder: Path) -> None:
    """COLMAP's log goes to a file in `folder`, not to the terminal (errors still show)."""
    pycolmap = import_pycolmap()
    folder.mkdir(parents=True, exist_ok=True)
    log = pycolmap.logging
    log.alsologtostderr = False  # pycolmap's default copies every line to the terminal
    log.stderrthreshold = log.ERROR
    log.set_log_destination(log.INFO, str(folder / "colmap."))


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def extract_features(
    database: Path, image_dir: Path, groups: list[list[str]], max_side: int = MAX_FEATURE_SIDE, progress=None
) -> None:
    """SIFT features of every image into `database`; each group of image names shares one camera
    (SIMPLE_RADIAL: focal, principal point, one distortion term; the focal length starts from
    EXIF where the photo has it)."""
    pycolmap = import_pycolmap()
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = max_side
    options.num_threads = _threads()
    total, done = sum(len(g) for g in groups), 0
    for names in groups:
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "SIMPLE_RADIAL"
        for batch in _batches(names, total):
            _run(
                lambda token, batch=batch, reader=reader: pycolmap.extract_features(
                    database,
                    image_dir,
                    image_names=batch,
                    camera_mode=pycolmap.CameraMode.SINGLE,
                    reader_options=reader,
                    extraction_options=options,
                    device=pycolmap.Device.cpu,
                    cancellation_token=token,
                )
            )
            if reader.existing_camera_id < 0:  # the group's camera now exists: the rest share it
                with contextlib.closing(pycolmap.Database.open(database)) as db:
                    reader.existing_camera_id = db.read_image_with_name(names[0]).camera_id
            done += len(batch)
            if progress is not None:
                progress(done, total)


def _batches(items: list, total: int, updates: int = 12, smallest: int = 4) -> list[list]:
    """`items` in batches, about `updates` for `total` items: each pycolmap call costs a fixed
    start-up (~0.5 s extracting, ~1 s matching), so progress is reported a dozen times a stage.
    (A second SQLite library reading COLMAP's database while it writes is unsafe: SIGBUS.)"""
    size = max(smallest, -(-total // updates))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run(work):
    """work(cancellation_token) in a thread; Ctrl-C cancels it (the call returns within a batch)."""
    token = import_pycolmap().CancellationToken()
    result: dict = {}

    def target():
        try:
            result["value"] = work(token)
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        token.cancel()
        thread.join()
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]


def sequential_pairs(names: list[str], overlap: int = SEQUENTIAL_OVERLAP) -> list[tuple[str, str]]:
    n = len(names)
    return [(names[i], names[j]) for i in range(n) for j in range(i + 1, min(n, i + 1 + overlap))]


def is_walk(database: Path, names: list[str]) -> bool:
    """True when consecutive images (in name order) match: a video, or photos taken walking."""
    pycolmap = import_pycolmap()
    with contextlib.closing(pycolmap.Database.open(database)) as db:
        ids = {img.name: img.image_id for img in db.read_all_images()}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    verified = {p: n for p, n in zip(pair_ids, inliers)}
    steps = [
        verified.get(pycolmap.image_pair_to_pair_id(ids[a], ids[b]), 0) >= MIN_STEP_INLIERS
        for a, b in zip(names, names[1:])
    ]
    return len(steps) > 0 and sum(steps) >= WALK_SHARE * len(steps)


def spatial_pairs(model, done: set, k: int = LOOP_NEIGHBOURS, max_angle: float = LOOP_MAX_ANGLE) -> list:
    """Pairs of registered images whose cameras are near in `model` (each image's k nearest
    centres), looking within `max_angle` degrees of each other, and not in `done`."""
    images = [img for img in model.images.values() if img.has_pose]
    names = [img.name for img in images]
    c2w = [img.cam_from_world().inverse().matrix() for img in images]
    centres = np.array([m[:, 3] for m in c2w])
    axes = np.array([m[:, 2] for m in c2w])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    cos = np.cos(np.radians(max_angle))
    pairs = set()
    for i in range(len(names)):
        for j in np.argsort(dist[i])[:k]:
            pair = tuple(sorted((names[i], names[int(j)])))
            if axes[i] @ axes[j] >= cos and pair not in done:
                pairs.add(pair)
    return sorted(pairs)


def match_capture(database: Path, image_dir: Path, names: list[str], work: Path, progress=None) -> str:
    """Match the pairs of images worth matching; returns how they were chosen.

    Each image is matched with its SEQUENTIAL_OVERLAP successors in name order first. When those
    match (a walk: a video, photos taken walking), the walk is mapped once and loops are closed
    by position: each image with its nearest cameras in that map looking the same way. A loop
    found by appearance alone can join two sides of a symmetric object (a can's label repeats
    half a turn round): those false pairs bent beer's reconstruction by ~3 degrees at three
    places. Otherwise (names not in capture order): every pair up to EXHAUSTIVE_MAX images,
    above that the most similar images by a bag of visual words."""
    done = 0

    def step(pairs: list, total: int) -> None:
        nonlocal done
        start = done
        match_pairs(database, pairs, progress=lambda d, t: progress and progress(start + d, total))
        done += len(pairs)

    first = sequential_pairs(names)
    n = len(names)
    step(first, len(first) + n * LOOP_NEIGHBOURS // 2)
    matched = set(first)
    if is_walk(database, names):
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            walk = map_images(database, image_dir, Path(tmp), n, refine_intrinsics=False)
        if walk is not None and 2 * walk.num_reg_images() >= n:
            loops = spatial_pairs(walk, matched)
            step(loops, done + len(loops))
            return "sequential + loops by position"
    if n <= EXHAUSTIVE_MAX:
        rest = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n)]
        how = "exhaustive"
    else:
        index = {name: i for i, name in enumerate(names)}
        rest = set()
        for i, neighbours in enumerate(similar_images(database, names, RETRIEVAL_NEIGHBOURS)):
            rest.update(tuple(sorted((names[i], names[int(j)]), key=index.get)) for j in neighbours if j != i)
        rest = sorted(rest, key=lambda p: (index[p[0]], index[p[1]]))
        how = "sequential + retrieval"
    rest = [p for p in rest if p not in matched]
    step(rest, done + len(rest))
    return how


def similar_images(database: Path, names: list[str], k: int, words: int = 512, per_image: int = 600, seed: int = 0):
    """For each image, the `k` images whose SIFT descriptors share the most visual words (tf-idf
    cosine similarity; the vocabulary is a k-means of a sample of this capture's descriptors)."""
    rng = np.random.default_rng(seed)
    with contextlib.closing(import_pycolmap().Database.open(database)) as db:
        descs = []
        for name in names:
            d = np.asarray(db.read_descriptors(db.read_image_with_name(name).image_id).data, dtype=np.float32)
            descs.append(d[rng.permutation(len(d))[:per_image]] if len(d) else np.zeros((0, 128), np.float32))
    sample = np.concatenate(descs)
    centres = sample[rng.choice(len(sample), size=min(words, len(sample)), replace=False)]
    for _ in range(8):  # Lloyd's iterations
        assign = _nearest(sample, centres)
        for c in range(len(centres)):
            members = sample[assign == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    hist = np.zeros((len(names), len(centres)), dtype=np.float32)
    for i, d in enumerate(descs):
        if len(d):
            np.add.at(hist[i], _nearest(d, centres), 1.0)
    idf = np.log(len(names) / np.maximum((hist > 0).sum(axis=0), 1.0))
    vec = hist * idf
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    sim = vec @ vec.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None]
    return d.argmin(axis=1)


def match_pairs(database: Path, pairs: list[tuple[str, str]], progress=None) -> None:
    """Match SIFT features of each pair and verify them geometrically (two-view geometry)."""
    pycolmap = import_pycolmap()
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = _threads()
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        for batch in _batches(pairs, len(pairs), smallest=50):
            listing = Path(tmp) / "pairs.txt"
            listing.write_text("".join(f"{a} {b}\n" for a, b in batch))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = str(listing)
            _run(
                lambda token, pairing=pairing: pycolmap.match_image_pairs(
                    database,
                    matching_options=options,
                    pairing_options=pairing,
                    device=pycolmap.Device.cpu,
                    cancellation_token=token,
                )
            )
            done += len(batch)
            if progress is not None:
                progress(done, len(pairs))


def map_images(
    database: Path,
    image_dir: Path,
    out_dir: Path,
    num_images: int,
    progress=None,
    refine_intrinsics: bool = True,
    drop_outliers: bool = True,
):
    """The largest model of COLMAP's incremental mapper, refined by one bundle adjustment that
    includes the principal point, then without the points that disagree with the cameras
    (`drop_outlier_points`); None when no model was made. Ctrl-C cancels it."""
    pycolmap = import_pycolmap()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = _threads()
    registered = [0]

    def next_image():
        registered[0] += 1
        if progress is not None:
            progress(min(registered[0], num_images), num_images)

    models = _run(
        lambda token: pycolmap.incremental_mapping(
            database,
            image_dir,
            out_dir,
            options=options,
            initial_image_pair_callback=lambda: registered.__setitem__(0, 2),
            next_image_callback=next_image,
            cancellation_token=token,
        )
    )
    models = [m for m in models.values() if m.num_reg_images() > 0]
    if not models:
        return None
    best = max(models, key=lambda m: m.num_reg_images())
    if refine_intrinsics:
        refined = pycolmap.Reconstruction(best)
        _run(lambda token: refine(refined))
        if _reprojection_error(refined) <= (1.0 - PRINCIPAL_POINT_GAIN) * _reprojection_error(best):
            best = refined
    if drop_outliers:
        _run(lambda token: drop_outlier_points(best))
    return best


def drop_outlier_points(model, factor: float = OUTLIER_FACTOR, rounds: int = OUTLIER_ROUNDS) -> None:
    """Drop the points whose reprojection error is above `factor` times the median, then bundle
    adjust again, `rounds` times. The mapper keeps points up to 4 px off; in a video of a scene
    that moves, the moving objects' features make such points (each consistent over a few
    frames) and pull the cameras with them. On a filmed moving scene, dropping them brought the
    median rotation error from 1.5 to 0.3 degrees; on beer and Strecha's entry-P10 it moved it
    by under 0.03 degrees (bench/process.py's outlier-filter case)."""
    for _ in range(rounds):
        model.update_point_3d_errors()
        errors = [p.error for p in model.points3D.values()]
        if not errors:
            return
        limit = factor * float(np.median(errors))
        for point_id in [i for i, p in model.points3D.items() if p.error > limit]:
            model.delete_point3D(point_id)
        bundle_adjust(model)


def _reprojection_error(model) -> float:
    model.update_point_3d_errors()
    return model.compute_mean_reprojection_error()


def refine(model) -> None:
    """Global bundle adjustment with the principal point free (COLMAP keeps it at the image centre).

    Kept only when it lowers the mean reprojection error by PRINCIPAL_POINT_GAIN: on Strecha's
    entry-P10 (a principal point 16 px off centre) by 4%, on an orbit at one height by 0.06%:
    there the principal point and the cameras' pitch trade off freely, and it drifted 12 px,
    tilting every camera by 2.4 degrees."""
    bundle_adjust(model, refine_principal_point=True)


def bundle_adjust(model, refine_principal_point: bool = False) -> None:
    """One global bundle adjustment of every registered image (pycolmap's `bundle_adjustment`
    helper would print COLMAP's log to the terminal)."""
    pycolmap = import_pycolmap()
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_principal_point = refine_principal_point
    options.print_summary = False
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in model.reg_image_ids():
        config.add_image(image_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.THREE_POINTS)
    pycolmap.create_default_bundle_adjuster(options, config, model).solve()
