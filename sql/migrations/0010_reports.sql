-- Daily reconciliation reports per program (one row per business date and program).
CREATE TABLE bridge.reconciliation_report (
    report_date                 date NOT NULL,
    benefit_program_mnemonic    text NOT NULL,
    report                      jsonb NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_date, benefit_program_mnemonic)
);
