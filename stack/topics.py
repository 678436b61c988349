"""Create and reconfigure privaflow's topics on any Kafka cluster from the one definition in
schemas/topics.py (the local stack, a test cluster, or a cluster without Strimzi)."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from schemas.topics import DAY_MS, Topic, all_topics


def topics_for_site(site: object | None = None) -> list[Topic]:
    """All topics with retentions from a site config (or the defaults)."""
    if site is None:
        return all_topics()
    ret = site.retention  # type: ignore[attr-defined]
    return all_topics(int(ret.detections_days * DAY_MS), int(ret.partner_days * DAY_MS))


def _admin(bootstrap: str, extra: dict[str, str] | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})


def ensure_topics(bootstrap: str, topics: list[Topic] | None = None, extra: dict[str, str] | None = None,
                  timeout: float = 30) -> list[str]:
    """Create the topics that are missing (existing ones are left alone); returns the names created."""
    topics = topics or all_topics()
    admin = _admin(bootstrap, extra)
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(t.name, t.partitions, 1, config=t.config()) for t in missing],
                                  operation_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as e:  # another process may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    return created


def apply_retention(bootstrap: str, topics: list[Topic], extra: dict[str, str] | None = None,
                    timeout: float = 30) -> dict[str, str]:
    """Set retention.ms and cleanup.policy of existing topics to the definition; returns name -> retention."""
    admin = _admin(bootstrap, extra)
    existing = set(admin.list_topics(timeout=timeout).topics)
    chosen = [t for t in topics if t.name in existing]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.config().items()])
        for t in chosen]
    if not resources:
        return {}
    for fut in admin.incremental_alter_configs(resources, request_timeout=timeout).values():
        fut.result()
    return {t.name: t.config()["retention.ms"] for t in chosen}
