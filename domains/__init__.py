"""Domain adapters: each reads one dataset's native format into ``Sample`` objects and ships a
generator that writes a small synthetic dataset in that same format (see ``domains.base``)."""

from domains.base import (
    DOMAINS,
    AnnotationError,
    DatasetNotFoundError,
    Domain,
    DomainDataset,
    LabelbudgetError,
    MetricSpec,
    Sample,
    SpecError,
    get_domain,
    register_domain,
)

__all__ = [
    "DOMAINS",
    "AnnotationError",
    "DatasetNotFoundError",
    "Domain",
    "DomainDataset",
    "LabelbudgetError",
    "MetricSpec",
    "Sample",
    "SpecError",
    "get_domain",
    "register_domain",
]
