"""The producer's own portals (Opendatasoft, CKAN): their usage, reuses and comments next to data.gouv.fr."""
