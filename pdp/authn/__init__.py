"""Authentication: turning a credential into the policy's `input.subject`."""
