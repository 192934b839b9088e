"""`docloop simulate`: a seeded, synthetic event stream of a hospital for demos, load tests and replay tests."""

from engine.simulate.cli import add_parser, run
from engine.simulate.world import (
    FedBackPattern,
    ProviderProfile,
    Simulation,
    SimulationConfig,
    Tally,
    generate,
    simulate,
)

__all__ = [
    "FedBackPattern",
    "ProviderProfile",
    "Simulation",
    "SimulationConfig",
    "Tally",
    "add_parser",
    "generate",
    "run",
    "simulate",
]
