"""The G2P disbursement bridge: PBMS staging -> validated envelopes -> sponsor bank -> reconciled statements."""
