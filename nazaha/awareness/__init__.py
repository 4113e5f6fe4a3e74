"""Awareness for citizens: the content library, subscriptions, broadcasts, quizzes, surveys
and campaign links (issue 11). Nothing here refers to the report side."""
