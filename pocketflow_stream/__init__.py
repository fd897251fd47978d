"""pocketflow_stream"""
