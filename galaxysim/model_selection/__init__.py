"""Cross-validated comparison of search methods: scores per method, class and fold."""

from galaxysim.model_selection._search_cv import SearchCVResult, cross_validate_search

__all__ = ["SearchCVResult", "cross_validate_search"]
