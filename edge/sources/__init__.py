"""Frame sources by URI: cameras (V4L2, CSI), files, RTSP, recorded drives, image folders, ROS
bags (``bag``, read with rosbags), GStreamer launch lines and test patterns; ``factory`` builds one from its URI, ``sanity`` checks
each frame's content before the model sees it.
"""
