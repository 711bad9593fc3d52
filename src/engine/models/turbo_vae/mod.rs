//! TurboVAED: the distilled Wan2.2 video decoder of daVinci-MagiHuman.
