"""audioret.distill: two-stage training with estimated audio-caption correspondences (see README_section.md)."""
