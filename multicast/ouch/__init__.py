"""Order entry: OUCH 4.2 and 5.0 (schema, compiled decoder, encoders, reference decoder), the SoupBinTCP
order-entry client, the order lifecycle tracker, and OUCH sessions read from captures."""
