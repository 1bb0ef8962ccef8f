"""Diversity: drop near-duplicate frames and spread the budget over drives and time.

Near-duplicates are found with a 64-bit difference hash of the whole frame (:func:`.scan.dhash`):
two frames of the same drive within ``window_s`` whose hashes differ in at most ``same_drive_bits``
bits, or two frames of different drives within ``any_bits`` bits (the same scene recorded twice). The
budget is dealt round-robin over the drives (sorted by name), each drive giving its
highest-priority frame that is no duplicate of one already chosen, so one long drive cannot take
it all. The result depends only on the candidates, never on how they were sharded.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from stopsign.train.data.mine.records import Candidate


@dataclass(frozen=True)
class DiversityConfig:
    """Duplicate rules: ``same_drive_bits`` within ``window_s`` seconds on one drive, ``any_bits``
    between drives."""

    same_drive_bits: int = 6
    window_s: float = 1.0
    any_bits: int = 2


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def is_duplicate(candidate: Candidate, chosen: list[Candidate], config: DiversityConfig) -> bool:
    for other in chosen:
        bits = hamming(candidate.dhash, other.dhash)
        if other.drive != candidate.drive:
            if bits <= config.any_bits:
                return True
        elif (
            bits <= config.same_drive_bits
            and abs(other.stamp_ns - candidate.stamp_ns) / 1e9 < config.window_s
        ):
            return True
    return False


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Highest priority first; ties by drive and frame, so the order is total and reproducible."""
    return sorted(candidates, key=lambda c: (-round(c.priority, 6), c.drive, c.index))


def select(
    candidates: list[Candidate], budget: int, config: DiversityConfig | None = None
) -> list[Candidate]:
    """Up to ``budget`` candidates, round-robin over drives, no near-duplicates; in selection order."""
    config = config or DiversityConfig()
    per_drive: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in rank(candidates):
        per_drive[candidate.drive].append(candidate)
    queues = {drive: iter(queue) for drive, queue in sorted(per_drive.items())}
    chosen: list[Candidate] = []
    while queues and len(chosen) < budget:
        for drive in list(queues):
            if len(chosen) >= budget:
                break
            for candidate in queues[drive]:
                if not is_duplicate(candidate, chosen, config):
                    chosen.append(candidate)
                    break
            else:
                del queues[drive]
    return chosen
