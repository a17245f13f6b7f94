"""Flying many episodes in-process: expert demonstrations recorded as bags, learners, DAgger, evaluation.

Sits on :mod:`lnn_nav.sim`, :mod:`lnn_nav.models` and :mod:`lnn_nav.data`;
no ROS.
"""
