"""Networks: backbone registry, initial weights, SPAMFM fusion, sensor teachers, consensus heads,
video student."""

from __future__ import annotations

from sakdn.models.backbones import BACKBONES, Backbone, build_backbone, list_backbones
from sakdn.models.consensus import AvgConsensus, TRNConsensus, build_consensus
from sakdn.models.spamfm import SPAMFM
from sakdn.models.student import Student, StudentOutput, param_groups
from sakdn.models.teacher import TeacherEnsemble, TeacherOutput, semantic_distance, teacher_loss

__all__ = [
    "BACKBONES",
    "SPAMFM",
    "AvgConsensus",
    "Backbone",
    "Student",
    "StudentOutput",
    "TRNConsensus",
    "TeacherEnsemble",
    "TeacherOutput",
    "build_backbone",
    "build_consensus",
    "list_backbones",
    "param_groups",
    "semantic_distance",
    "teacher_loss",
]
