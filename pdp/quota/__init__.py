"""Quota and rate-limit verdicts on Redis counters (see docs/quotas.md)."""

from .descriptors import Descriptor, DescriptorError, parse_descriptors
from .service import QuotaService, QuotaVerdict

__all__ = ["Descriptor", "DescriptorError", "parse_descriptors", "QuotaService", "QuotaVerdict"]
