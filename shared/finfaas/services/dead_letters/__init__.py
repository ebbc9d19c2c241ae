"""Dead letters: the suite's queues' figures, their dead-letter queues' messages, and redrive."""
