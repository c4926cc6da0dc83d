"""Tests of push sync: planner, engine, queue wiring and fault tolerance."""
