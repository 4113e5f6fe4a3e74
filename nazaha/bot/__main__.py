from nazaha.bot.cli import main

main()
