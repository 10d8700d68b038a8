"""ConvLens worker side: Celery app and task, job records (Redis), object storage."""
