"""rclpy nodes (controller, sim bridge, ...) and the message conversions they share.

The only package that imports ``rclpy``; import the node modules themselves
(``lnn_nav.nodes.controller``) so importing this package stays cheap.
"""
