pub mod devbroker;
