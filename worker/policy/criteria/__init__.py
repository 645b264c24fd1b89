"""The criteria of a prior-authorization policy: compiled rule data plus one pure function per criterion.

One module per kind of criterion: ``stage`` (1.A, disease stage) and ``specialist`` (1.B, prescriber or
consultant, whose specialties ``specialty`` reads).
"""

from __future__ import annotations

from worker.contracts.codes import ReasonCode
from worker.policy.criteria.specialist import SpecialistRule, prescribed_by_or_with_specialist
from worker.policy.criteria.stage import DiseaseStageRule, recurrent_or_metastatic

__all__ = [
    "DiseaseStageRule",
    "ReasonCode",
    "SpecialistRule",
    "prescribed_by_or_with_specialist",
    "recurrent_or_metastatic",
]
