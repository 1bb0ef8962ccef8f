"""ROS 2 messages for bags in and out (needs the ``ros`` extra: ``rosbags``).

- ``types``: one typestore (ROS 2 Humble's, plus ``vision_msgs`` and ``foxglove_msgs`` registered
  from the upstream ``.msg`` definitions shipped in ``msg/``) and stamp conversions;
- ``build``: the messages the project writes (detections, annotations, images, camera info);
- ``images``: ``sensor_msgs`` images to and from BGR frames.

Nothing outside a bag source, the bag sink or bag conversion imports this package, so
``import stopsign.edge`` works without ``rosbags``.
"""
