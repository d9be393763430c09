"""Tables the ingestion assets write besides the raw snapshot's, by asset: SQL models read them like raw tables."""

import dagster as dg

from usage_pipeline.ingest.events import EVENTS_KEY, EVENTS_TABLE
from usage_pipeline.ingest.reuse_link_checks import LINK_CHECKS_KEY, LINK_CHECKS_TABLE
from usage_pipeline.ingest.theme_corrections import CORRECTIONS_KEY, CORRECTIONS_TABLE
from usage_pipeline.leads.asset import LEADS_KEY
from usage_pipeline.leads.asset import TABLES as LEAD_TABLES
from usage_pipeline.leads.statuses import STATUSES_KEY, STATUSES_TABLE
from usage_pipeline.own_portals.assets import OWN_PORTALS_KEY
from usage_pipeline.own_portals.assets import TABLES as OWN_PORTAL_TABLES
from usage_pipeline.surveys.assets import SURVEY_TABLE_ASSETS

PYTHON_TABLE_ASSETS: dict[str, dg.AssetKey] = {
    EVENTS_TABLE: EVENTS_KEY,
    LINK_CHECKS_TABLE: LINK_CHECKS_KEY,
    CORRECTIONS_TABLE: CORRECTIONS_KEY,
    STATUSES_TABLE: STATUSES_KEY,
    **dict.fromkeys(LEAD_TABLES, LEADS_KEY),
    **SURVEY_TABLE_ASSETS,
    **dict.fromkeys(OWN_PORTAL_TABLES, OWN_PORTALS_KEY),
}
