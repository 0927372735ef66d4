"""Scoring a source's new partitions in this process: one after the other, their row keys
checked and the partitions put in place in groups (:mod:`tasks.serving.scored_source`)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from schemas.errors import DataError
from tasks.serving.partition_scoring import (
    PartitionScore,
    Serving,
    no_challenger,
    score_partition,
)
from tasks.serving.scored_lease import LeaseLost
from tasks.serving.scored_source import ScoredSource

logger = logging.getLogger(__name__)

# new partitions whose keys are checked together: their hashes (8 bytes a row) in memory
KEY_CHECK_ROWS = 1 << 24


def score_pending(scored: ScoredSource, todo: list[tuple[Path, str, str]], serving: Serving,
                  *, extra=no_challenger, score_one=score_partition) -> list[dict]:
    """Score the ``todo`` partitions one after the other, and check their keys and put them
    in place in groups of about ``KEY_CHECK_ROWS`` rows: every scored partition's key file is
    read once per group, not once per new partition. A failure puts the partitions scored
    before it in place first (unless the run lost its lease); an interruption leaves no
    temporary file behind.

    Returns:
        Each partition's state entry with ``partition`` and ``flagged``.

    Raises:
        The first partition's failure (a bad partition, a repeated key).
    """
    done: list[dict] = []
    group: list[tuple[str, str, PartitionScore]] = []
    try:
        for path, rel, digest in todo:
            group.append((rel, digest, score_one(scored.files.local(path), scored.target(rel),
                                                 serving, where=scored.where(rel),
                                                 extra=extra)))
            scored.check_lease()
            if sum(result.rows for _, _, result in group) >= KEY_CHECK_ROWS:
                ready, group = group, []
                done += settle_all(scored, ready, serving)
        ready, group = group, []
        return done + settle_all(scored, ready, serving)
    except LeaseLost:
        raise  # another run holds the scored source now: write nothing more
    except Exception:
        ready, group = group, []
        with contextlib.suppress(DataError):
            settle_all(scored, ready, serving)  # keep what was scored before the failure
        raise
    finally:
        for _, _, result in group:  # scored but neither checked nor placed (interrupted)
            scored.discard(result)


def settle_all(scored: ScoredSource, group: list[tuple[str, str, PartitionScore]],
               serving: Serving) -> list[dict]:
    """Check the keys of partitions scored into their temporary files, and put in place and
    record those accepted.

    Raises:
        DataError: the first refused partition's, once the others are in place.
    """
    refused = scored.check_all_repeats([(rel, result) for rel, _, result in group],
                                       serving.key_column)
    done = [settle(scored, rel, digest, result, serving)
            for (rel, digest, result), error in zip(group, refused, strict=True)
            if error is None]
    if errors := [error for error in refused if error is not None]:
        raise errors[0]
    return done


def settle(scored: ScoredSource, rel: str, digest: str, result: PartitionScore,
           serving: Serving) -> dict:
    """Put a partition whose keys are checked in place and record it; returns its state
    entry with ``partition`` and ``flagged``."""
    entry = scored.commit(rel, digest, result, serving)
    logger.info("Scored %s: %d rows, %d flagged, with %s -> %s", rel, result.rows,
                result.flagged, serving.version, scored.placed(rel))
    return {"partition": rel, "flagged": result.flagged, **entry}
