-- reporting.dataset_twins
-- Each followed data.gouv.fr dataset and its twin on one of the producer's own portals (portals.yaml), as of
-- the latest snapshot of that portal, with how the twin was found: harvest_metadata (data.gouv.fr's harvest
-- remote_id / remote_url / uri on the portal's domain), resource_url (a resource pointing at the portal's
-- dataset), or title (the same title, accents and case aside, on exactly one portal dataset).
-- grain: dataset_id, portal
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id.
--   portal VARCHAR: The portal's name in portals.yaml.
--   portal_dataset_id VARCHAR: The twin's id on that portal.
--   method VARCHAR: harvest_metadata, resource_url or title.
--   linked_on DATE: Snapshot date of the link.
select dataset_id, portal, portal_dataset_id, method, snapshot_date as linked_on
from raw.dataset_twins
qualify snapshot_date = max(snapshot_date) over (partition by portal)
order by dataset_id, portal
