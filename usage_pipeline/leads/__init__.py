"""Reuses nobody declared: lead sources search the followed datasets' identifiers in other places (GitHub, HAL,
the portal's own reuses) and the `raw/reuse_leads` asset keeps what they find, for the producer to invite the
authors to declare their reuse. `sources` (what a lead is, a dataset's identifiers), one module per source,
`statuses` (the producer's reuse_leads_status.csv), `asset`."""
