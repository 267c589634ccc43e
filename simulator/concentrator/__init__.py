"""MQTT data concentrators publishing ``metergw.readings/1`` batches."""
