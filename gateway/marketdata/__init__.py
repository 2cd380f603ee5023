"""Market data: the feed built from engine events, and its MQTT publisher."""
