"""Raw ingestion: dataset x date partitions, the daily crawl, discovery and the schedule."""
