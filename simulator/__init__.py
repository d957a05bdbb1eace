"""A discrete-event short-video platform with comment sections (simpy). Never imports torch."""
from .config import BehaviourConfig, SimConfig, WorldConfig
from .errors import InputError
from .policy import CommentRequest, History, Policy, Slate, UserTruth, VideoRequest, WorldView
from .run import simulate

__all__ = [
    "BehaviourConfig", "CommentRequest", "History", "InputError", "Policy", "SimConfig", "Slate",
    "UserTruth", "VideoRequest", "WorldConfig", "WorldView", "simulate",
]
