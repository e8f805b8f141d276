"""What tests in several rooms share: tiny builds and their checks, the Chromium fixture, the bf16 probe."""
