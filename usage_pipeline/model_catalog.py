"""Every table the transform step builds: the SQL models of `dbt_like_sql/` and the tables built in Python."""

from usage_pipeline.insights.discussion_themes import DISCUSSION_THEMES
from usage_pipeline.insights.theme_labels import THEME_LABELS_TABLE
from usage_pipeline.models import Model, load_models


def all_models() -> list[Model]:
    """The project's models, checked to read only raw tables or other models."""
    return load_models(python_models=(DISCUSSION_THEMES, THEME_LABELS_TABLE))
