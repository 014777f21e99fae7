"""OmegaConf resolvers used by the configs (no torch import: keeps `--help` fast).

``aug=spec aug.spec=saturated@8`` names view and factor in one string, so a single sweep
can mix the factor-free baseline with factor sweeps (see experiment/saturation_sweep.yaml).
"""

from omegaconf import OmegaConf


def parse_view_spec(spec: str) -> tuple[str, float]:
    name, _, factor = str(spec).partition("@")
    try:
        return name.strip(), float(factor) if factor else 1.0
    except ValueError:
        raise ValueError(f"aug.spec={spec!r}: expected VIEW or VIEW@FACTOR, e.g. inverted_saturated@500") from None


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("view_name"):
        OmegaConf.register_new_resolver("view_name", lambda s: parse_view_spec(s)[0])
        OmegaConf.register_new_resolver("view_factor", lambda s: parse_view_spec(s)[1])
