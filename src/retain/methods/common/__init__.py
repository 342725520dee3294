"""Components several methods hold: the replay buffer, the teacher-logit store, the batch plan."""
