//! HappyHorse Nano: the small model of the MagiHuman family the project trains and ships.
pub mod train;
