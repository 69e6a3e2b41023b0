"""One router per concern; ``service.app`` includes them all."""
