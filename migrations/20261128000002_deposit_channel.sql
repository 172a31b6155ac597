-- accounts.FundsDeposited v2 says through which channel money came in; deposits published as
-- v1 are upcast with channel `unknown`. The projection keeps the channel of the latest deposit.
ALTER TABLE account_balances ADD COLUMN last_deposit_channel text;
