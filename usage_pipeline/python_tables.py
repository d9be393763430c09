"""Tables built by Python assets, by the asset that writes them: SQL models read them like raw tables."""

import dagster as dg

from usage_pipeline.insights.assets import DISCUSSION_THEMES_KEY, DISCUSSION_THEMES_TABLE
from usage_pipeline.insights.events import EVENTS_KEY, EVENTS_TABLE

PYTHON_TABLE_ASSETS: dict[str, dg.AssetKey] = {
    DISCUSSION_THEMES_TABLE: DISCUSSION_THEMES_KEY,
    EVENTS_TABLE: EVENTS_KEY,
}
