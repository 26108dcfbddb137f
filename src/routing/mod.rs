//! Pure replica selection: who is the client, how far is each region, which replica wins.
