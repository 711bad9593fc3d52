//! HappyHorse Nano: the small model of the MagiHuman family the project trains and ships (codecs, text encoder, config).
